r"""Matrix factorisation with the BPR loss: the papers' MF row."""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter

from diffkg_pyg.hyperparameters import HyperParameter, Space, hyperparameters

__all__ = ['MF']


@hyperparameters(
    HyperParameter('embedding_dim', int, 'embedding size',
                   doc='The embedding size :math:`d`',
                   aliases=('latdim', 'embed_size'), range='[1, inf)'),
    HyperParameter('l2_weight', float, 'L2 weight on the batch embeddings',
                   doc=r':math:`\lambda`', aliases=('reg', ),
                   range='[0, inf)', space=Space(1e-6, 1e-2, log=True)),
)
class MF(torch.nn.Module):
    r"""Matrix factorisation trained with the Bayesian personalised ranking
    loss, from the `"BPR: Bayesian Personalized Ranking from Implicit
    Feedback" <https://arxiv.org/abs/1205.2618>`_ paper (Rendle et al.,
    UAI 2009), the MF baseline of the knowledge-graph recommendation
    papers (KGAT, KGIN, KGCL, DiffKG).

    .. math::
        \hat{y}_{ui} = \mathbf{p}_u^\top \mathbf{q}_i, \qquad
        \mathcal{L} = -\frac{1}{|B|} \sum_{(u, i, j) \in B}
        \log \sigma(\hat{y}_{ui} - \hat{y}_{uj}) + \lambda \frac{1}{|B|}
        \sum_{(u, i, j) \in B} \left( \|\mathbf{p}_u\|^2 +
        \|\mathbf{q}_i\|^2 + \|\mathbf{q}_j\|^2 \right)

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.

    Shapes:
        - **input:** user-item pairs :obj:`[2, num_pairs]`
        - **output:** scores :obj:`[num_pairs]`
    """
    def __init__(self, num_users: int, num_items: int,
                 embedding_dim: int = 64) -> None:
        super().__init__()
        for name, value in (('num_users', num_users),
                            ('num_items', num_items)):
            if value < 1:
                raise ValueError(f"'{name}' must be >= 1 (got {value})")
        self.num_users = num_users
        self.num_items = num_items
        self.embedding_dim = embedding_dim
        self.user_emb = Parameter(torch.empty(num_users, embedding_dim))
        self.item_emb = Parameter(torch.empty(num_items, embedding_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.xavier_uniform_(self.user_emb)
        torch.nn.init.xavier_uniform_(self.item_emb)

    def forward(self, edge_label_index: Tensor) -> Tensor:
        r"""The scores of the user-item pairs :obj:`edge_label_index`."""
        user, item = edge_label_index
        return (self.user_emb[user] * self.item_emb[item]).sum(dim=-1)

    def loss(self, user: Tensor, pos_item: Tensor, neg_item: Tensor,
             l2_weight: float = 1e-4) -> Tuple[Tensor, Tensor]:
        r"""The BPR loss of the triples plus :obj:`l2_weight` times the
        batch embeddings' mean squared norm; returns it and the detached
        BPR term."""
        u = self.user_emb[user]
        i, j = self.item_emb[pos_item], self.item_emb[neg_item]
        bpr = -F.logsigmoid((u * (i - j)).sum(dim=-1)).mean()
        l2 = (u.square() + i.square() + j.square()).sum(dim=-1).mean()
        return bpr + l2_weight * l2, bpr.detach()

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, embedding_dim={self.embedding_dim})')
