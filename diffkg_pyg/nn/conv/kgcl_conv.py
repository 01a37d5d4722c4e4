r"""KGCL's relation-aware aggregation of an item's knowledge-graph entities."""
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Linear
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import softmax

__all__ = ['KGCLConv']

#: The score of a padding slot (the authors' ``-9e15`` mask).
PADDING_SCORE = -9e15


class KGCLConv(MessagePassing):
    r"""The relation-aware knowledge aggregation of the `"Knowledge Graph
    Contrastive Learning for Recommendation"
    <https://arxiv.org/abs/2205.00976>`_ paper (KGCL, Yang et al., SIGIR
    2022), as the authors' code (its ``GAT.forward_relation``) computes
    it: every item attends over a fixed number :math:`K` of entity slots,

    .. math::
        s_{i,e} &= \mathrm{LeakyReLU}_{0.2}\left(\left(\mathbf{W}
        [\mathbf{e}_i \Vert \mathbf{e}_e] + \mathbf{b}\right)^\top
        \mathbf{e}_r\right), \qquad \alpha_{i,e} = \mathrm{softmax}_{e
        \in \mathcal{N}_i}(s_{i,e})

        \mathbf{e}'_i &= \mathbf{e}_i + \sum_{e \in \mathcal{N}_i}
        \mathrm{dropout}(\alpha_{i,e}) \, \mathbf{e}_e.

    A padding slot (an item with fewer than :math:`K` entities, or an entity
    dropped by the KG augmentation) scores :math:`-9 \cdot 10^{15}`: it
    weighs nothing unless all of an item's slots are padding, when the
    attention is uniform over them (the padding entity's embedding, as in
    the authors' code).

    Args:
        channels (int): Embedding size.
        negative_slope (float, optional): LeakyReLU slope.
            (default: :obj:`0.2`)
        dropout (float, optional): Dropout of the attention weights.
            (default: :obj:`0.4`)

    Shapes:
        - **input:** item embeddings :math:`(I, d)`, slot entity
          embeddings :math:`(E, d)` (one row per edge, already gathered),
          edges :math:`(2, E)` (row 0 the items, row 1 the entities),
          slot relation embeddings :math:`(E, d)`, padding mask
          :math:`(E)` (:obj:`True` for a real entity)
        - **output:** item embeddings :math:`(I, d)`
    """
    def __init__(self, channels: int, negative_slope: float = 0.2,
                 dropout: float = 0.4) -> None:
        super().__init__(aggr='add', flow='target_to_source', node_dim=0)
        self.channels = channels
        self.negative_slope = negative_slope
        self.dropout = dropout
        self.lin = Linear(2 * channels, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.lin.reset_parameters()

    def forward(self, x: Tensor, entity_x: Tensor, edge_index: Tensor,
                relation_x: Tensor, mask: Tensor) -> Tensor:
        item = edge_index[0]
        score = (self.lin(torch.cat([x[item], entity_x], dim=-1)) *
                 relation_x).sum(dim=-1)
        score = F.leaky_relu(score, self.negative_slope)
        score = torch.where(mask, score, torch.full_like(score,
                                                         PADDING_SCORE))
        alpha = softmax(score, item, num_nodes=x.size(0))
        alpha = F.dropout(alpha, self.dropout, self.training)
        out = self.propagate(edge_index, alpha=alpha, entity_x=entity_x,
                             size=(x.size(0), x.size(0)))
        return out + x

    def message(self, alpha: Tensor, entity_x: Tensor) -> Tensor:
        return alpha.unsqueeze(-1) * entity_x

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.channels})'
