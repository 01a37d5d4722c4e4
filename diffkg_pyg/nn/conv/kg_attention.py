r"""DiffKG's relation-aware attention over the knowledge graph."""
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn import MessagePassing
from torch_geometric.typing import OptTensor
from torch_geometric.utils import softmax

__all__ = ['KGAttentionConv', 'KGEncoder']


class KGAttentionConv(MessagePassing):
    r"""The relation-aware attention hop of the `"DiffKG: Knowledge Graph
    Diffusion Model for Recommendation" <https://arxiv.org/abs/2312.16890>`_
    paper: every head aggregates its tails, weighted by an attention that
    depends on the relation of the edge, and keeps itself,

    .. math::
        s_{h,t,r} &= \mathrm{LeakyReLU}_{0.2}\left(\sum_k
        \left([\mathbf{e}_h \,\Vert\, \mathbf{e}_t] \mathbf{W}\right)_k
        \mathbf{r}_{r,k}\right)

        a_{h,t,r} &= \mathrm{softmax}_{(h, t', r') \in \mathcal{N}(h)}
        (s_{h,t,r})

        \mathbf{e}'_h &= \mathbf{e}_h + \sum_{(h,t,r) \in \mathcal{N}(h)}
        a_{h,t,r} \, \mathbf{e}_t.

    Since :math:`[\mathbf{e}_h \Vert \mathbf{e}_t] \mathbf{W} = \mathbf{e}_h
    \mathbf{W}_\mathrm{top} + \mathbf{e}_t \mathbf{W}_\mathrm{bottom}`, both
    halves are computed once per node. The score is linear in them, so
    :math:`s_{h,t,r} = \mathrm{LeakyReLU}(\mathbf{S}^\mathrm{top}_{h,r} +
    \mathbf{S}^\mathrm{bottom}_{t,r})` with the per-node, per-relation
    tables :math:`\mathbf{S}^\mathrm{top} = \mathbf{E} \mathbf{W}_\mathrm{top}
    \mathbf{R}^\top` and :math:`\mathbf{S}^\mathrm{bottom} = \mathbf{E}
    \mathbf{W}_\mathrm{bottom} \mathbf{R}^\top` (:math:`N \times R`): an
    edge gathers two scalars instead of three :math:`d`-vectors. When
    :math:`N R > E d` (many relations, few edges) the score is taken per
    edge instead, :math:`(\mathbf{e}_h \mathbf{W}_\mathrm{top} + \mathbf{e}_t
    \mathbf{W}_\mathrm{bottom}) \cdot \mathbf{r}`; both are exact.

    Args:
        channels (int): Size of the entity and relation embeddings.
        negative_slope (float, optional): LeakyReLU slope.
            (default: :obj:`0.2`)

    Shapes:
        - **input:** entity embeddings :math:`(N, d)`, edge indices
          :math:`(2, E)` (row 0 the heads, row 1 the tails), edge types
          :math:`(E)`, relation embeddings :math:`(R, d)`
        - **output:** entity embeddings :math:`(N, d)`
    """
    def __init__(self, channels: int, negative_slope: float = 0.2) -> None:
        super().__init__(aggr='add', flow='target_to_source', node_dim=0)
        self.channels = channels
        self.negative_slope = negative_slope
        self.weight = Parameter(torch.empty(2 * channels, channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        gain = torch.nn.init.calculate_gain('relu')
        torch.nn.init.xavier_uniform_(self.weight, gain=gain)

    def forward(self, x: Tensor, edge_index: Tensor, edge_type: Tensor,
                relation_emb: Tensor) -> Tensor:
        top = x @ self.weight[:self.channels]
        bottom = x @ self.weight[self.channels:]
        head, tail = edge_index
        num_relations = relation_emb.size(0)
        if x.size(0) * num_relations <= edge_index.size(1) * self.channels:
            top_score = (top @ relation_emb.t()).view(-1)
            bottom_score = (bottom @ relation_emb.t()).view(-1)
            score = (top_score[head * num_relations + edge_type] +
                     bottom_score[tail * num_relations + edge_type])
        else:
            score = ((top[head] + bottom[tail]) *
                     relation_emb[edge_type]).sum(dim=-1)
        out = self.propagate(edge_index, x=x, score=score,
                             size=(x.size(0), x.size(0)))
        return x + out

    def message(self, x_j: Tensor, score: Tensor, index: Tensor,
                ptr: OptTensor, size_i: int) -> Tensor:
        score = F.leaky_relu(score, self.negative_slope)
        alpha = softmax(score, index, ptr, size_i)
        return alpha.unsqueeze(-1) * x_j

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.channels})'


class KGEncoder(torch.nn.Module):
    r"""The knowledge-graph encoder of DiffKG: :obj:`num_hops` applications
    of one :class:`KGAttentionConv` (shared weights), each followed by
    dropout and row-wise L2 normalisation, accumulated with a residual
    weight :math:`\lambda`:

    .. math::
        \mathbf{o} \leftarrow \mathbf{E};\;\mathbf{e} \leftarrow \mathbf{E};
        \quad \text{repeat } L: \;
        \mathbf{e} \leftarrow \mathrm{normalize}(\mathrm{dropout}(
        \mathrm{hop}(\mathbf{e}))),\;
        \mathbf{o} \leftarrow \lambda \mathbf{o} + \mathbf{e}.

    Args:
        channels (int): Embedding size.
        num_hops (int, optional): Hops :math:`L`. (default: :obj:`1`)
        dropout (float, optional): Message dropout. (default: :obj:`0.1`)
        res_lambda (float, optional): Residual weight :math:`\lambda`.
            (default: :obj:`0.5`)
    """
    def __init__(self, channels: int, num_hops: int = 1, dropout: float = 0.1,
                 res_lambda: float = 0.5) -> None:
        super().__init__()
        if num_hops < 1:
            raise ValueError(f"'num_hops' must be >= 1 (got {num_hops})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"'dropout' must lie in [0, 1) (got {dropout})")
        self.num_hops = num_hops
        self.dropout = dropout
        self.res_lambda = res_lambda
        self.conv = KGAttentionConv(channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()

    def forward(self, entity_emb: Tensor, relation_emb: Tensor,
                edge_index: Tensor, edge_type: Tensor) -> Tensor:
        out = x = entity_emb
        for _ in range(self.num_hops):
            x = self.conv(x, edge_index, edge_type, relation_emb)
            x = F.dropout(x, self.dropout, self.training)
            x = F.normalize(x, dim=-1)
            out = self.res_lambda * out + x
        return out
