r"""KGIN's relational path-aware aggregation: one hop over the knowledge graph
and the user-item graph."""
from typing import Tuple

import torch
from torch import Tensor
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

__all__ = ['KGINConv']


class KGINConv(MessagePassing):
    r"""One hop of the relational path-aware aggregation of the `"Learning
    Intents behind Interactions with Knowledge Graph for Recommendation"
    <https://arxiv.org/abs/2102.07057>`_ paper (KGIN, Wang et al., WWW
    2021), as the authors' code computes it.

    Entities aggregate their knowledge-graph neighbours, each message
    modulated by the relation embedding of its edge; users aggregate their
    items and weight the result by their attention over the intents:

    .. math::
        \mathbf{e}'_h &= \frac{1}{|\mathcal{N}_h|} \sum_{(h, r, t) \in
        \mathcal{N}_h} \mathbf{e}_r \odot \mathbf{e}_t

        \mathbf{m}_u &= \sum_{i} a_{ui} \, \mathbf{e}_i, \qquad
        \beta_{u,p} = \mathrm{softmax}_p\left(\mathbf{e}_u^\top
        \mathbf{q}_p\right)

        \mathbf{e}'_u &= \Big(\sum_p \beta_{u,p} \, \mathbf{e}_p\Big)
        \odot \mathbf{m}_u + \mathbf{m}_u.

    :math:`a_{ui}` is the weight of the user-item edge (:math:`1 / |
    \mathcal{N}_u|` in KGIN, the mean over the user's items),
    :math:`\mathbf{e}_p` the intent embeddings and :math:`\mathbf{q}_p` the
    keys the users attend with (KGIN's code uses a separate trainable
    :obj:`latent_emb`; the paper the intent embeddings themselves). The last
    :math:`+ \mathbf{m}_u` is the code's extra residual, which the paper does
    not have (:obj:`user_residual=False` drops it).

    Args:
        user_residual (bool, optional): Add :math:`\mathbf{m}_u` to the
            users' output, as the authors' code does. (default: :obj:`True`)

    Shapes:
        - **input:** entity embeddings :math:`(N, d)`, user embeddings
          :math:`(U, d)`, KG edges :math:`(2, E)` (row 0 the heads, which
          receive, row 1 the tails), edge types :math:`(E)`, relation
          embeddings :math:`(R, d)`, user-item edges :math:`(2, E')` (user,
          item) with weights :math:`(E')`, intent embeddings :math:`(K, d)`
          and intent keys :math:`(K, d)`
        - **output:** entity embeddings :math:`(N, d)`, user embeddings
          :math:`(U, d)`
    """
    def __init__(self, user_residual: bool = True) -> None:
        super().__init__(aggr='mean', flow='target_to_source', node_dim=0)
        self.user_residual = user_residual

    def forward(self, x: Tensor, user_x: Tensor, edge_index: Tensor,
                edge_type: Tensor, relation_emb: Tensor,
                user_edge_index: Tensor, user_edge_weight: Tensor,
                intent_emb: Tensor, intent_key: Tensor
                ) -> Tuple[Tensor, Tensor]:
        out = self.propagate(edge_index, x=x,
                             relation=relation_emb[edge_type],
                             size=(x.size(0), x.size(0)))
        user, item = user_edge_index
        mean = scatter(x[item] * user_edge_weight.unsqueeze(-1), user, 0,
                       dim_size=user_x.size(0), reduce='sum')
        beta = torch.softmax(user_x @ intent_key.t(), dim=-1)
        user_out = mean * (beta @ intent_emb)
        if self.user_residual:
            user_out = user_out + mean
        return out, user_out

    def message(self, x_j: Tensor, relation: Tensor) -> Tensor:
        return x_j * relation

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}('
                f'user_residual={self.user_residual})')
