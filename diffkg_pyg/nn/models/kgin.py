r"""KGIN: intents behind interactions, over the knowledge graph."""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter

from diffkg_pyg.hyperparameters import HyperParameter, Space, hyperparameters
from diffkg_pyg.nn.conv.kgin_conv import KGINConv

__all__ = ['KGIN', 'INDEPENDENCE']

#: The independence losses of the authors' code (its :obj:`--ind`).
INDEPENDENCE = ('distance', 'cosine', 'mi')


def distance_correlation(x: Tensor) -> Tensor:
    r"""The sum of the distance correlations between all pairs of rows of
    :obj:`x` :obj:`[K, n]`, with the authors' :math:`10^{-8}` guards."""
    sq = x.square()
    dist = sq.unsqueeze(2) - 2 * x.unsqueeze(2) * x.unsqueeze(1) + \
        sq.unsqueeze(1)
    # torch.maximum, not clamp: at the diagonal's exact zeros it passes half
    # the gradient, as the authors' torch.max(., zeros) does.
    dist = torch.maximum(dist, torch.zeros_like(dist)).add(1e-8).sqrt()
    centred = (dist - dist.mean(dim=1, keepdim=True) -
               dist.mean(dim=2, keepdim=True) +
               dist.mean(dim=(1, 2), keepdim=True))
    n = x.size(1)
    dcov = torch.einsum('krs,lrs->kl', centred, centred) / n**2
    dcov = torch.maximum(dcov, torch.zeros_like(dcov)).add(1e-8).sqrt()
    diag = dcov.diagonal()
    dcor = dcov / (diag.unsqueeze(1) * diag.unsqueeze(0) + 1e-8).sqrt()
    return dcor.triu(diagonal=1).sum()


def cosine_independence(x: Tensor) -> Tensor:
    r"""The sum of the squared cosines between all pairs of rows of
    :obj:`x` :obj:`[K, n]`."""
    unit = x / x.norm(dim=1, keepdim=True)
    return (unit @ unit.t()).square().triu(diagonal=1).sum()


def mutual_information(x: Tensor, temperature: float) -> Tensor:
    r"""The authors' mutual-information term on :obj:`x` :obj:`[K, n]`,
    transcribed as their code computes it (over the :math:`n` columns:
    :math:`-\sum_c \log(\exp(1 / \tau) / \exp(s_c / \tau))` with
    :math:`s_c` the sum of row :math:`c` of :math:`x^\top x`)."""
    cols = x.t()
    unit = cols / cols.norm(dim=1, keepdim=True)
    pos = torch.exp(unit.square().sum(dim=1) / temperature)
    total = torch.exp((cols @ x).sum(dim=1) / temperature)
    return -torch.log(pos / total).sum()


@hyperparameters(
    HyperParameter('embedding_dim', int, 'embedding size',
                   aliases=('dim', ), range='[1, inf)'),
    HyperParameter('num_layers', int, 'propagation hops',
                   aliases=('context_hops', ), range='[1, inf)',
                   space=Space(1, 3)),
    HyperParameter('num_intents', int, 'intents (latent factors)',
                   doc='Intents :math:`K`',
                   aliases=('n_factors', ), range='[1, inf)',
                   space=Space(choices=(1, 2, 4, 8))),
    HyperParameter('node_dropout', float, 'node dropout rate (see the '
                   'model: the kept fraction of KG edges; 0: off)',
                   doc=r'Node dropout rate :math:`\rho`; 0 turns it off',
                   aliases=('node_dropout_rate', ), range='[0, 1)',
                   space=Space(0.0, 0.7)),
    HyperParameter('dropout', float, 'message dropout after every hop',
                   aliases=('mess_dropout_rate', ), range='[0, 1)',
                   space=Space(0.0, 0.5)),
    HyperParameter('independence', str, 'independence loss between '
                   'intents', doc="The independence loss between intents: "
                   "distance correlation, cosine or the code's mutual "
                   'information', aliases=('ind', ), choices=INDEPENDENCE),
    HyperParameter('mi_temperature', float, "temperature of the 'mi' "
                   'independence loss', range='(0, inf)'),
    HyperParameter('intent_attention', str, "users attend to intents "
                   "through a separate latent embedding (the code's) or "
                   "the intent embeddings (the paper's)",
                   choices=('latent', 'intents')),
    HyperParameter('user_residual', bool, "the code's extra mean "
                   'residual in the user aggregation'),
    HyperParameter('independence_on', str, 'the independence loss on '
                   "the intents' relation weights (the code's) or their "
                   "embeddings (the paper's)",
                   choices=('weights', 'intents')),
    HyperParameter('l2_weight', float, 'L2 weight on the batch\'s '
                   'final embeddings', doc=r':math:`\lambda_2`',
                   aliases=('l2', ),
                   range='[0, inf)',
                   space=Space(1e-7, 1e-3, log=True)),
    HyperParameter('independence_weight', float, 'weight of the '
                   'independence loss',
                   doc=r':math:`\lambda_\mathrm{ind}`',
                   aliases=('sim_regularity', ), range='[0, inf)',
                   space=Space(1e-6, 1e-2, log=True)),
)
class KGIN(torch.nn.Module):
    r"""The KGIN model from the `"Learning Intents behind Interactions with
    Knowledge Graph for Recommendation" <https://arxiv.org/abs/2102.07057>`_
    paper (Wang et al., WWW 2021), as the `authors' code
    <https://github.com/huangtinglin/Knowledge_Graph_based_Intent_Network>`_
    computes it.

    :math:`K` intents are attentive combinations of the relation
    embeddings, :math:`\mathbf{e}_p = \sum_r \mathrm{softmax}(\mathbf{w}_p)_r
    \mathbf{e}_r`. :obj:`num_layers` hops of :class:`~diffkg_pyg.nn.conv.
    KGINConv` (no weights) propagate users and entities; every hop's output
    is message-dropped and L2-normalised, and the final embeddings are the
    sum of the input and every hop. Scores are dot products. The loss
    (:meth:`loss`) is BPR on the final embeddings, their L2 term and the
    independence of the intents:

    .. math::
        \mathcal{L} = -\frac{1}{|B|}\sum_{(u,i,j)} \log\sigma(\hat{y}_{ui} -
        \hat{y}_{uj}) + \lambda_2 \frac{\|\mathbf{E}_B\|^2}{2|B|} +
        \lambda_\mathrm{ind} \mathcal{L}_\mathrm{ind}.

    In training, node dropout keeps :math:`\lfloor \rho E \rfloor` KG edges
    drawn without replacement and keeps every user-item edge with
    probability :math:`\rho`, scaling it by :math:`1 / (1 - \rho)`
    (:math:`\rho` = :obj:`node_dropout`, as the authors' code: at its 0.5
    both are a standard dropout of half the edges).

    Where the authors' code departs from the paper, it is followed and the
    paper's form is an option: :obj:`intent_attention`, :obj:`user_residual`
    and :obj:`independence_on`.

    Args:
        num_users (int): The number of users.
        num_entities (int): The number of entities (items first).
        num_relations (int): The number of relation types, inverses
            included.

    Shapes:
        - **input:** train user-item pairs :obj:`[2, num_pairs]`, KG edges
          :obj:`[2, num_kg_edges]` and their types :obj:`[num_kg_edges]`
        - **output:** user embeddings :obj:`[num_users, embedding_dim]` and
          entity embeddings :obj:`[num_entities, embedding_dim]`
    """
    def __init__(self, num_users: int, num_entities: int, num_relations: int,
                 embedding_dim: int = 64, num_layers: int = 3,
                 num_intents: int = 4, node_dropout: float = 0.5,
                 dropout: float = 0.1, independence: str = 'distance',
                 mi_temperature: float = 0.2,
                 intent_attention: str = 'latent',
                 user_residual: bool = True,
                 independence_on: str = 'weights') -> None:
        super().__init__()
        for name, value in (('num_users', num_users),
                            ('num_entities', num_entities),
                            ('num_relations', num_relations)):
            if value < 1:
                raise ValueError(f"'{name}' must be >= 1 (got {value})")
        self.num_users = num_users
        self.num_entities = num_entities
        self.num_relations = num_relations
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.num_intents = num_intents
        self.node_dropout = node_dropout
        self.dropout = dropout
        self.independence = independence
        self.mi_temperature = mi_temperature
        self.intent_attention = intent_attention
        self.independence_on = independence_on
        self.user_emb = Parameter(torch.empty(num_users, embedding_dim))
        self.entity_emb = Parameter(torch.empty(num_entities, embedding_dim))
        self.latent_emb = Parameter(torch.empty(num_intents, embedding_dim))
        self.relation_emb = Parameter(torch.empty(num_relations,
                                                  embedding_dim))
        self.intent_weight = Parameter(torch.empty(num_intents,
                                                   num_relations))
        self.conv = KGINConv(user_residual)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Xavier-uniform initialisation as the authors': users and
        entities with the bound of one :obj:`[num_users + num_entities, d]`
        matrix."""
        bound = math.sqrt(6.0 / (self.num_users + self.num_entities +
                                 self.embedding_dim))
        torch.nn.init.uniform_(self.user_emb, -bound, bound)
        torch.nn.init.uniform_(self.entity_emb, -bound, bound)
        for weight in (self.latent_emb, self.relation_emb,
                       self.intent_weight):
            torch.nn.init.xavier_uniform_(weight)

    def intents(self) -> Tensor:
        r"""The intent embeddings :math:`\mathbf{e}_p` :obj:`[K, d]`."""
        return torch.softmax(self.intent_weight, dim=-1) @ self.relation_emb

    def independence_loss(self) -> Tensor:
        r"""The independence term :math:`\mathcal{L}_\mathrm{ind}` between
        the intents (on their weights or embeddings, see
        :obj:`independence_on`)."""
        x = (self.intent_weight if self.independence_on == 'weights' else
             self.intents())
        if self.independence == 'mi':
            return mutual_information(x, self.mi_temperature)
        if self.independence == 'cosine':
            return cosine_independence(x)
        return distance_correlation(x)

    def _drop_edges(self, edge_index: Tensor, edge_weight: Tensor,
                    kg_edge_index: Tensor, kg_edge_type: Tensor,
                    generator: Optional[torch.Generator]
                    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        rate = self.node_dropout
        num_kg = kg_edge_index.size(1)
        keep = torch.randperm(num_kg, generator=generator,
                              device=kg_edge_index.device)[
            :int(num_kg * rate)]
        kg_edge_index, kg_edge_type = kg_edge_index[:, keep], \
            kg_edge_type[keep]
        mask = torch.rand(edge_weight.numel(), generator=generator,
                          device=edge_weight.device) >= 1.0 - rate
        return (edge_index[:, mask], edge_weight[mask] / (1.0 - rate),
                kg_edge_index, kg_edge_type)

    def forward(self, edge_index: Tensor, kg_edge_index: Tensor,
                kg_edge_type: Tensor,
                generator: Optional[torch.Generator] = None
                ) -> Tuple[Tensor, Tensor]:
        r"""Propagates over the train pairs :obj:`edge_index` (user, item)
        and the knowledge graph; returns the final user and entity
        embeddings. In training the node dropout draws its edges from
        :obj:`generator` (on the edges' device; the global generator when
        :obj:`None`)."""
        user = edge_index[0]
        degree = torch.bincount(user, minlength=self.num_users)
        edge_weight = degree.to(self.user_emb.dtype).reciprocal()[user]
        if self.training and self.node_dropout > 0:
            edge_index, edge_weight, kg_edge_index, kg_edge_type = \
                self._drop_edges(edge_index, edge_weight, kg_edge_index,
                                 kg_edge_type, generator)
        intent_emb = self.intents()
        key = self.latent_emb if self.intent_attention == 'latent' else \
            intent_emb
        x, user_x = self.entity_emb, self.user_emb
        out, user_out = x, user_x
        for _ in range(self.num_layers):
            x, user_x = self.conv(x, user_x, kg_edge_index, kg_edge_type,
                                  self.relation_emb, edge_index, edge_weight,
                                  intent_emb, key)
            x = F.normalize(F.dropout(x, self.dropout, self.training))
            user_x = F.normalize(F.dropout(user_x, self.dropout,
                                           self.training))
            out, user_out = out + x, user_out + user_x
        return user_out, out

    def loss(self, user_out: Tensor, entity_out: Tensor, user: Tensor,
             pos_item: Tensor, neg_item: Tensor, l2_weight: float = 1e-5,
             independence_weight: float = 1e-4,
             batch_size: Optional[float] = None
             ) -> Tuple[Tensor, Tensor, Tensor]:
        r"""The loss of the triples :obj:`(user, pos_item, neg_item)`
        :obj:`[batch]` given :meth:`forward`'s outputs; returns it, the
        detached BPR term and the detached independence term.

        Args:
            batch_size (float, optional): The divisor of the L2 term
                (:obj:`user.numel()` by default).
        """
        u = user_out[user]
        i, j = entity_out[pos_item], entity_out[neg_item]
        bpr = -F.logsigmoid((u * i).sum(dim=1) - (u * j).sum(dim=1)).mean()
        size = float(user.numel()) if batch_size is None else batch_size
        l2 = (u.square().sum() + i.square().sum() + j.square().sum()) / 2
        independence = self.independence_loss()
        loss = (bpr + l2_weight * l2 / size +
                independence_weight * independence)
        return loss, bpr.detach(), independence.detach()

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_entities}, {self.num_relations}, '
                f'embedding_dim={self.embedding_dim}, '
                f'num_layers={self.num_layers}, '
                f'num_intents={self.num_intents})')
