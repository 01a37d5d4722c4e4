r"""KGAT: attentive propagation over the collaborative knowledge graph."""
import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.utils import softmax

from diffkg_pyg.hyperparameters import HyperParameter, Space, hyperparameters
from diffkg_pyg.nn.conv.kgat_conv import AGGREGATORS, KGATConv

__all__ = ['KGAT', 'collaborative_kg']


def collaborative_kg(edge_index: Tensor, kg_edge_index: Tensor,
                     kg_edge_type: Tensor, num_entities: int
                     ) -> Tuple[Tensor, Tensor]:
    r"""KGAT's collaborative knowledge graph over the nodes :obj:`[0,
    num_entities)` (entities, items first) and :obj:`num_entities + u`
    (user :obj:`u`): relation 0 links a user to each train item, relation 1
    an item to each of its users, relation :math:`r + 2` is KG relation
    :math:`r` (inverses included). Returns the typed edges :obj:`[2, E]`
    (row 0 the receiving node) and their relations :obj:`[E]`.

    Args:
        edge_index (torch.Tensor): Train user-item pairs :obj:`[2, P]`.
        kg_edge_index (torch.Tensor): KG edges :obj:`[2, E_kg]`, every
            triplet and its inverse (see
            :func:`~diffkg_pyg.train.recipes.kgin_edges`).
        kg_edge_type (torch.Tensor): Their relations :obj:`[E_kg]`.
        num_entities (int): The number of entities.
    """
    user, item = edge_index[0] + num_entities, edge_index[1]
    zero = torch.zeros_like(user)
    return (torch.cat([torch.stack([user, item]), torch.stack([item, user]),
                       kg_edge_index], dim=1),
            torch.cat([zero, zero + 1, kg_edge_type + 2]))


def _one_rate(value: str) -> float:
    # The port's --mess_dropout '[0.1, 0.1, 0.1]': one rate for every layer.
    rates = {float(v) for v in str(value).strip().strip('[]').split(',')
             if v.strip()}
    if len(rates) != 1:
        raise ValueError(f'mess_dropout must give one rate for every layer, '
                         f'such as [0.1, 0.1, 0.1] (got {value!r})')
    return rates.pop()


@hyperparameters(
    HyperParameter('embedding_dim', int, 'embedding size',
                   doc=r'Size of :math:`\mathbf{e}^{(0)}`',
                   aliases=('embed_dim', ), range='[1, inf)'),
    HyperParameter('relation_dim', int, "TransR's relation size",
                   doc='Size of the relation space of TransR',
                   range='[1, inf)'),
    HyperParameter('hidden_channels', tuple, 'output sizes of the '
                   'layers', aliases=('conv_dim_list', ),
                   space=Space(choices=((64, ), (64, 32),
                                        (64, 32, 16)))),
    HyperParameter('dropout', float, 'message dropout after every layer',
                   aliases=('mess_dropout', ), from_alias=_one_rate,
                   alias_type=str, range='[0, 1)',
                   space=Space(0.0, 0.5)),
    HyperParameter('aggregator', str, 'how a node combines itself and '
                   'its neighbours', aliases=('aggregation_type', ),
                   choices=AGGREGATORS),
    HyperParameter('l2_weight', float, 'L2 weight of the CF loss',
                   aliases=('cf_l2loss_lambda', ), range='[0, inf)',
                   space=Space(1e-7, 1e-3, log=True)),
    HyperParameter('kg_l2_weight', float, 'L2 weight of the TransR '
                   'loss', aliases=('kg_l2loss_lambda', ),
                   range='[0, inf)'),
    losses=('cf_loss', 'kg_loss'),
)
class KGAT(torch.nn.Module):
    r"""The KGAT model from the `"KGAT: Knowledge Graph Attention Network
    for Recommendation" <https://arxiv.org/abs/1905.07854>`_ paper (Wang et
    al., KDD 2019), as its maintained PyTorch port (`LunaBlack/KGAT-pytorch
    <https://github.com/LunaBlack/KGAT-pytorch>`_) computes it.

    Users, entities and relations live in one collaborative knowledge graph
    (:func:`collaborative_kg`). Layer :math:`l` (a :class:`~diffkg_pyg.nn.
    conv.KGATConv`) maps :math:`\mathbf{e}^{(l-1)}` to
    :math:`\mathbf{e}^{(l)}`, then message dropout; the final embedding is
    :math:`[\mathbf{e}^{(0)} \Vert \hat{\mathbf{e}}^{(1)} \Vert \dots]`,
    :math:`\hat{\mathbf{e}}^{(l)}` the L2-normalised layer outputs (the next
    layer reads the unnormalised one). The weights :math:`\pi(h, t)` are the
    attention, recomputed after every epoch (:meth:`attention`, no
    gradient), starting from the adjacency normalised per relation
    (:meth:`initial_weights`):

    .. math::
        \pi(h, r, t) = (\mathbf{W}_r \mathbf{e}_t)^\top \tanh(\mathbf{W}_r
        \mathbf{e}_h + \mathbf{e}_r), \qquad \pi(h, t) =
        \mathrm{softmax}_{t \in \mathcal{N}_h}\Big(\sum_r \pi(h, r,
        t)\Big).

    Two losses, trained alternately (:meth:`cf_loss`, :meth:`kg_loss`): BPR
    on the final embeddings with an L2 term, and TransR's
    :math:`-\log\sigma(g(h, r, t') - g(h, r, t))`, :math:`g = \|\mathbf{W}_r
    \mathbf{e}_h + \mathbf{e}_r - \mathbf{W}_r \mathbf{e}_t\|^2`, with an L2
    term, on the layer-0 embeddings.

    Args:
        num_users (int): The number of users.
        num_entities (int): The number of entities (items first).
        num_relations (int): KG relation types, inverses included (the model
            adds the two interaction relations).

    Shapes:
        - **input:** unique node pairs :obj:`[2, num_pairs]` and their
          weights :obj:`[num_pairs]`
        - **output:** final embeddings :obj:`[num_entities + num_users,
          embedding_dim + sum(hidden_channels)]` (entities first)
    """
    def __init__(self, num_users: int, num_entities: int, num_relations: int,
                 embedding_dim: int = 64, relation_dim: int = 64,
                 hidden_channels: Sequence[int] = (64, 32, 16),
                 dropout: float = 0.1,
                 aggregator: str = 'bi-interaction') -> None:
        super().__init__()
        for name, value in (('num_users', num_users),
                            ('num_entities', num_entities)):
            if value < 1:
                raise ValueError(f"'{name}' must be >= 1 (got {value})")
        if num_relations < 0:
            raise ValueError(f"'num_relations' must be >= 0 (got "
                             f'{num_relations})')
        if len(hidden_channels) < 1 or min(hidden_channels) < 1:
            raise ValueError(f"'hidden_channels' must be one or more sizes "
                             f'>= 1 (got {tuple(hidden_channels)})')
        self.num_users = num_users
        self.num_entities = num_entities
        self.num_relations = num_relations
        self.embedding_dim = embedding_dim
        self.relation_dim = relation_dim
        self.hidden_channels = tuple(hidden_channels)
        self.dropout = dropout
        self.entity_emb = Parameter(torch.empty(num_entities, embedding_dim))
        self.user_emb = Parameter(torch.empty(num_users, embedding_dim))
        self.relation_emb = Parameter(torch.empty(num_relations + 2,
                                                  relation_dim))
        self.transfer = Parameter(torch.empty(num_relations + 2,
                                              embedding_dim, relation_dim))
        sizes = (embedding_dim, ) + self.hidden_channels
        self.convs = torch.nn.ModuleList([
            KGATConv(sizes[i], sizes[i + 1], aggregator)
            for i in range(len(self.hidden_channels))])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Xavier-uniform initialisation as the port's: entities and users
        with the bound of one :obj:`[num_entities + num_users, d]` table."""
        bound = math.sqrt(6.0 / (self.num_entities + self.num_users +
                                 self.embedding_dim))
        torch.nn.init.uniform_(self.entity_emb, -bound, bound)
        torch.nn.init.uniform_(self.user_emb, -bound, bound)
        torch.nn.init.xavier_uniform_(self.relation_emb)
        torch.nn.init.xavier_uniform_(self.transfer)
        for conv in self.convs:
            conv.reset_parameters()

    @property
    def node_emb(self) -> Tensor:
        r"""The layer-0 embeddings :obj:`[num_entities + num_users, d]`."""
        return torch.cat([self.entity_emb, self.user_emb])

    @staticmethod
    def pairs(edge_index: Tensor, num_nodes: int) -> Tuple[Tensor, Tensor]:
        r"""The unique node pairs :obj:`[2, num_pairs]` of the typed edges
        :obj:`edge_index` (sorted by receiving node) and, for every edge,
        the index of its pair :obj:`[E]` (the port sums the entries of a
        pair joined by several relations, as a sparse matrix does)."""
        key, pair = torch.unique(edge_index[0] * num_nodes + edge_index[1],
                                 return_inverse=True)
        return torch.stack([key // num_nodes, key % num_nodes]), pair

    @staticmethod
    def initial_weights(edge_index: Tensor, edge_type: Tensor, pair: Tensor,
                        num_pairs: int) -> Tensor:
        r"""The port's first :math:`\pi`: the adjacency of every relation
        normalised by its row sums (:math:`1 / |\mathcal{N}_{h,r}|`), summed
        over the relations, per pair :obj:`[num_pairs]`."""
        head_type = edge_index[0] * (int(edge_type.max()) + 1) + edge_type
        _, group, count = torch.unique(head_type, return_inverse=True,
                                       return_counts=True)
        weight = count.to(torch.float).reciprocal()[group]
        return torch.zeros(num_pairs, device=weight.device).index_add_(
            0, pair, weight)

    @torch.no_grad()
    def attention(self, edge_index: Tensor, edge_type: Tensor, pairs: Tensor,
                  pair: Tensor) -> Tensor:
        r"""The attention :math:`\pi(h, t)` of every unique pair
        :obj:`[num_pairs]` from the typed edges (see :meth:`pairs`)."""
        x = self.node_emb
        head, tail = edge_index
        out = x.new_empty(edge_type.numel())
        for r in torch.unique(edge_type).tolist():  # One W_r at a time.
            mask = edge_type == r
            w = self.transfer[r]
            out[mask] = ((x[tail[mask]] @ w) * torch.tanh(
                x[head[mask]] @ w + self.relation_emb[r])).sum(dim=-1)
        score = x.new_zeros(pairs.size(1)).index_add_(
            0, pair, out)
        return softmax(score, pairs[0], num_nodes=x.size(0))

    def forward(self, edge_index: Tensor, edge_weight: Tensor) -> Tensor:
        r"""The final embeddings of every node from the unique pairs
        :obj:`edge_index` and their weights :obj:`edge_weight`."""
        x = self.node_emb
        out = [x]
        for conv in self.convs:
            x = F.dropout(conv(x, edge_index, edge_weight), self.dropout,
                          self.training)
            out.append(F.normalize(x, p=2, dim=1))
        return torch.cat(out, dim=1)

    def cf_loss(self, out: Tensor, user: Tensor, pos_item: Tensor,
                neg_item: Tensor, l2_weight: float = 1e-5
                ) -> Tuple[Tensor, Tensor]:
        r"""BPR on the final embeddings :obj:`out` of the triples (user ids
        as users, not nodes) plus :obj:`l2_weight` times their mean halved
        squared norms; returns it and the detached BPR term."""
        u = out[user + self.num_entities]
        i, j = out[pos_item], out[neg_item]
        bpr = -F.logsigmoid((u * i).sum(dim=1) - (u * j).sum(dim=1)).mean()
        l2 = sum(_half_square_mean(t) for t in (u, i, j))
        return bpr + l2_weight * l2, bpr.detach()

    def kg_loss(self, head: Tensor, relation: Tensor, pos_tail: Tensor,
                neg_tail: Tensor, kg_l2_weight: float = 1e-5
                ) -> Tuple[Tensor, Tensor]:
        r"""TransR's loss on the layer-0 embeddings of the typed triples
        (nodes and relations of :func:`collaborative_kg`) plus
        :obj:`kg_l2_weight` times the mean halved squared norms of the
        projected heads, relations and tails; returns it and the detached
        TransR term."""
        x = self.node_emb
        r = self.relation_emb[relation]
        h, t, t_neg = self._project(
            torch.stack([x[head], x[pos_tail], x[neg_tail]], dim=1),
            relation).unbind(dim=1)
        pos = (h + r - t).square().sum(dim=1)
        neg = (h + r - t_neg).square().sum(dim=1)
        transr = -F.logsigmoid(neg - pos).mean()
        l2 = sum(_half_square_mean(v) for v in (h, r, t, t_neg))
        return transr + kg_l2_weight * l2, transr.detach()

    def _project(self, rows: Tensor, relation: Tensor) -> Tensor:
        # rows [B, k, d] @ W_relation -> [B, k, relation_dim], one matmul
        # per relation present (not B gathered copies of the d x d' maps).
        order = torch.argsort(relation)
        counts = torch.bincount(relation, minlength=self.transfer.size(0))
        parts = [rows[chunk] @ self.transfer[r] for r, chunk in
                 enumerate(order.split(counts.tolist())) if chunk.numel()]
        out = torch.cat(parts)
        return out[torch.argsort(order)]

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_entities}, {self.num_relations}, '
                f'embedding_dim={self.embedding_dim}, '
                f'hidden_channels={self.hidden_channels})')


def _half_square_mean(x: Tensor) -> Tensor:
    return (x.square().sum(dim=1) / 2.0).mean()
