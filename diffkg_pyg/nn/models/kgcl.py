r"""KGCL: knowledge-graph contrastive learning for recommendation."""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter

from diffkg_pyg.data.graph import bipartite_adjacency
from diffkg_pyg.hyperparameters import HyperParameter, Space, hyperparameters
from diffkg_pyg.nn.conv.kgcl_conv import KGCLConv

__all__ = ['KGCL', 'item_slots', 'keep_probabilities', 'AUGMENTATIONS']

#: How the user-item views are augmented (the code's ``uicontrast``).
AUGMENTATIONS = ('random', 'weighted', 'weighted-mix')


def item_slots(triplets: Tensor, num_items: int, num_slots: int,
               padding_entity: int, padding_relation: int
               ) -> Tuple[Tensor, Tensor]:
    r"""KGCL's item knowledge: for every item, its first :obj:`num_slots`
    (relation, tail) in the order of :obj:`triplets` :obj:`[3, T]` whose
    head is an item, padded with :obj:`padding_entity` and
    :obj:`padding_relation` (the authors' ``get_kg_dict``). Returns the
    slot entities and relations, :obj:`[num_items, num_slots]` each."""
    head, relation, tail = triplets[:, triplets[0] < num_items]
    order = torch.argsort(head, stable=True)
    head, relation, tail = head[order], relation[order], tail[order]
    count = torch.bincount(head, minlength=num_items)
    start = torch.cumsum(count, 0) - count
    rank = torch.arange(head.numel(), device=head.device) - start[head]
    keep = rank < num_slots
    entity = torch.full((num_items, num_slots), padding_entity,
                        dtype=torch.long, device=head.device)
    slot_relation = torch.full_like(entity, padding_relation)
    entity[head[keep], rank[keep]] = tail[keep]
    slot_relation[head[keep], rank[keep]] = relation[keep]
    return entity, slot_relation


def keep_probabilities(stability: Tensor, ui_drop: float) -> Tensor:
    r"""The consistency-guided keep probability of every item from its
    KG-view agreement :obj:`stability` :obj:`[num_items]`: :math:`\exp`,
    min-max scaled, floored at 0.3, rescaled to mean :math:`1 -
    \mathrm{ui\_drop}`, capped at 0.95 (the authors'
    ``get_ui_views_weighted``)."""
    weight = torch.exp(stability)
    weight = (weight - weight.min()) / (weight.max() - weight.min())
    weight = torch.where(weight > 0.3, weight, torch.full_like(weight, 0.3))
    weight = (1 - ui_drop) / torch.mean(weight) * weight
    return torch.where(weight < 0.95, weight, torch.full_like(weight, 0.95))


def _keep_rate(value: float) -> float:
    return 1.0 - float(value)  # The code's --keepprob.


@hyperparameters(
    HyperParameter('embedding_dim', int, 'embedding size',
                   aliases=('recdim', ), range='[1, inf)'),
    HyperParameter('num_layers', int, 'LightGCN layers',
                   aliases=('layer', ), range='[0, inf)',
                   space=Space(1, 4)),
    HyperParameter('kg_dropout', float, 'the dropouts of the knowledge '
                   'aggregation', range='[0, 1)'),
    HyperParameter('num_slots', int, 'entities per item (the first '
                   'ones)', doc='Knowledge slots :math:`K` per item (its '
                   'first triplets)', aliases=('entity_num_per_item', ),
                   range='[1, inf)'),
    HyperParameter('kg_drop', float, 'slot drop probability of the KG '
                   'views', aliases=('kg_p_drop', ), range='[0, 1]',
                   space=Space(0.1, 0.9)),
    HyperParameter('augmentation', str, 'how the user-item views are '
                   'drawn', aliases=('uicontrast', ), choices=AUGMENTATIONS),
    HyperParameter('ui_drop', float, 'the drop rate of the user-item '
                   'views', aliases=('ui_p_drop', ), range='[0, 1)',
                   space=Space(0.0, 0.5)),
    HyperParameter('graph_dropout', float, 'edge dropout of the main '
                   "graph (the code's 1 - keepprob with --dropout 1)",
                   aliases=('keepprob', ), from_alias=_keep_rate,
                   alias_type=float, range='[0, 1)'),
    HyperParameter('ssl_weight', float, 'weight of the InfoNCE terms',
                   aliases=('ssl_reg', ), range='[0, inf)',
                   space=Space(0.01, 1.0, log=True)),
    HyperParameter('temperature', float, 'InfoNCE temperature',
                   aliases=('kgc_temp', ), range='(0, inf)',
                   space=Space(0.05, 1.0, log=True)),
    HyperParameter('l2_weight', float, 'L2 weight of the BPR loss',
                   aliases=('decay', ), range='[0, inf)',
                   space=Space(1e-6, 1e-2, log=True)),
    HyperParameter('kg_l2_weight', float, 'L2 weight of TransE',
                   range='[0, inf)'),
    losses=('loss', 'transe_loss'),
)
class KGCL(torch.nn.Module):
    r"""The KGCL model from the `"Knowledge Graph Contrastive Learning for
    Recommendation" <https://arxiv.org/abs/2205.00976>`_ paper (Yang et
    al., SIGIR 2022), as the `authors' code
    <https://github.com/yuh-yang/KGCL-SIGIR22>`_ computes it.

    An item's embedding is enriched from its :math:`K` knowledge slots by
    :class:`~diffkg_pyg.nn.conv.KGCLConv` (input dropout on the item and
    slot embeddings, attention dropout, output dropout, all at
    :obj:`kg_dropout`); users and enriched items are propagated by LightGCN
    over the normalised user-item adjacency, the final embeddings being the
    mean of the layers. The training signals (:meth:`loss`,
    :meth:`transe_loss`) are those of the authors' code: BPR summed over
    the batch with the L2 term of the layer-0 user and item embeddings
    (:meth:`bpr_loss`) plus :obj:`ssl_weight` times the InfoNCE
    (:meth:`info_nce`) between two augmented views of users and items;
    TransE on the item-entity triplets. A view (:meth:`kg_view`,
    :meth:`ui_views`) is the items' slots with each entity dropped with
    probability :obj:`kg_drop`, propagated over the user-item graph with
    interactions dropped: :obj:`'random'` keeps :obj:`1 - ui_drop` of
    them; :obj:`'weighted'` (the consistency-guided augmentation) keeps the
    interactions of each item with a probability from the agreement
    (cosine) of its embeddings under the two KG views
    (:func:`keep_probabilities`); :obj:`'weighted-mix'` (MIND) keeps 40 %
    of those and adds :math:`1 - \mathrm{ui\_drop}` of all interactions
    at random. The main graph drops each edge with probability
    :obj:`graph_dropout` (:meth:`drop_edges`).

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        num_entities (int): The number of entities slot tails index (a
            padding entity :obj:`num_entities` is added).
        num_relations (int): The number of relations (a padding relation is
            added).

    Shapes:
        - **input:** the normalised user-item adjacency (sparse
          :obj:`[U + I, U + I]`, users first), slot entities and relations
          :obj:`[I, K]`
        - **output:** user embeddings :obj:`[U, d]` and item embeddings
          :obj:`[I, d]`
    """
    def __init__(self, num_users: int, num_items: int, num_entities: int,
                 num_relations: int, embedding_dim: int = 64,
                 num_layers: int = 3, kg_dropout: float = 0.4,
                 num_slots: int = 10, kg_drop: float = 0.5,
                 augmentation: str = 'random', ui_drop: float = 0.001,
                 graph_dropout: float = 0.0) -> None:
        super().__init__()
        for name, value in (('num_users', num_users),
                            ('num_items', num_items),
                            ('num_entities', num_entities)):
            if value < 1:
                raise ValueError(f"'{name}' must be >= 1 (got {value})")
        if num_relations < 0:
            raise ValueError(f"'num_relations' must be >= 0 (got "
                             f'{num_relations})')
        self.num_users = num_users
        self.num_items = num_items
        self.num_entities = num_entities
        self.num_relations = num_relations
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.kg_dropout = kg_dropout
        self.num_slots = num_slots
        self.kg_drop = kg_drop
        self.augmentation = augmentation
        self.ui_drop = ui_drop
        self.graph_dropout = graph_dropout
        self.user_emb = Parameter(torch.empty(num_users, embedding_dim))
        self.item_emb = Parameter(torch.empty(num_items, embedding_dim))
        self.entity_emb = Parameter(torch.empty(num_entities + 1,
                                                embedding_dim))
        self.relation_emb = Parameter(torch.empty(num_relations + 1,
                                                  embedding_dim))
        self.conv = KGCLConv(embedding_dim, dropout=kg_dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""The authors' initialisation: normal with std 0.1 for the
        tables, PyTorch's default for the attention's linear layer."""
        for table in (self.user_emb, self.item_emb, self.entity_emb,
                      self.relation_emb):
            torch.nn.init.normal_(table, std=0.1)
        self.conv.reset_parameters()

    def item_embedding(self, slot_entity: Tensor,
                       slot_relation: Tensor) -> Tensor:
        r"""The items enriched from their slots :obj:`[I, K]` (a padding
        entity :obj:`num_entities` marks an empty slot)."""
        p, training = self.kg_dropout, self.training
        num_slots = slot_entity.size(1)
        item = torch.arange(self.num_items, device=slot_entity.device)
        edge_index = torch.stack([item.repeat_interleave(num_slots),
                                  slot_entity.reshape(-1)])
        x = F.dropout(self.item_emb, p, training)
        entity_x = F.dropout(self.entity_emb[edge_index[1]], p, training)
        relation_x = self.relation_emb[slot_relation.reshape(-1)]
        mask = edge_index[1] != self.num_entities
        out = self.conv(x, entity_x, edge_index, relation_x, mask)
        return F.dropout(out, p, training)

    def forward(self, adj: Tensor, slot_entity: Tensor,
                slot_relation: Tensor) -> Tuple[Tensor, Tensor]:
        r"""LightGCN over :obj:`adj` from the users and the enriched
        items; returns the final user and item embeddings."""
        x = torch.cat([self.user_emb,
                       self.item_embedding(slot_entity, slot_relation)])
        out = [x]
        for _ in range(self.num_layers):
            x = adj @ x
            out.append(x)
        out = torch.stack(out, dim=1).mean(dim=1)
        return out[:self.num_users], out[self.num_users:]

    def bpr_loss(self, user_out: Tensor, item_out: Tensor, user: Tensor,
                 pos_item: Tensor, neg_item: Tensor, l2_weight: float,
                 batch_size: Optional[float] = None) -> Tuple[Tensor, Tensor]:
        r"""BPR summed over the batch (its mean times :obj:`batch_size`,
        :obj:`user.numel()` unless given: a part of a sharded batch gives
        the whole batch's size) plus :obj:`l2_weight` times half
        the mean squared norm of the triples' layer-0 embeddings; returns it
        and the detached BPR term."""
        u = user_out[user]
        score = (u * item_out[pos_item]).sum(dim=1) - \
            (u * item_out[neg_item]).sum(dim=1)
        size = float(user.numel()) if batch_size is None else batch_size
        bpr = F.softplus(-score).mean() * size
        l2 = 0.5 * (self.user_emb[user].square().sum(dim=1) +
                    self.item_emb[pos_item].square().sum(dim=1) +
                    self.item_emb[neg_item].square().sum(dim=1)).mean()
        return bpr + l2_weight * l2, bpr.detach()

    def loss(self, adj: Tensor, slots: Sequence[Tensor],
             views: Sequence[Tuple[Tensor, Sequence[Tensor]]], user: Tensor,
             pos_item: Tensor, neg_item: Tensor, l2_weight: float = 1e-4,
             ssl_weight: float = 0.1, temperature: float = 0.2,
             batch_size: Optional[float] = None
             ) -> Tuple[Tensor, Tensor, Tensor]:
        r"""The joint loss of a batch of triples: :meth:`bpr_loss` on the
        main graph plus :obj:`ssl_weight` times the users' and the items'
        InfoNCE between the two views, both sums over the batch. Returns
        the loss and the detached BPR and InfoNCE terms.

        Args:
            adj (torch.Tensor): The main graph (normalised user-item
                adjacency, :meth:`drop_edges` in training).
            slots (tuple): The slot entities and relations :obj:`[I, K]`.
            views (sequence): The two views, each a user-item adjacency
                (:meth:`ui_views`) and its slots (:meth:`kg_view`).
            user (torch.Tensor): Users :obj:`[B]`.
            pos_item (torch.Tensor): Their train items :obj:`[B]`.
            neg_item (torch.Tensor): Their non-train items :obj:`[B]`.
            batch_size (float, optional): The batch's size
                (:obj:`user.numel()` unless given: a part of a sharded batch
                gives the whole batch's size).
        """
        user_out, item_out = self(adj, *slots)
        loss, bpr = self.bpr_loss(user_out, item_out, user, pos_item,
                                  neg_item, l2_weight, batch_size=batch_size)
        (u1, i1), (u2, i2) = (self(graph, *kg) for graph, kg in views)
        size = float(user.numel()) if batch_size is None else batch_size
        ssl = (self.info_nce(u1[user], u2[user], u2, temperature) +
               self.info_nce(i1[pos_item], i2[pos_item], i2, temperature)) * \
            (size / max(user.numel(), 1))
        return loss + ssl_weight * ssl, bpr, ssl.detach()

    # -- augmentation --------------------------------------------------------
    def kg_view(self, slot_entity: Tensor, slot_relation: Tensor,
                generator: Optional[torch.Generator] = None
                ) -> Tuple[Tensor, Tensor]:
        r"""A KG view: the slots :obj:`[I, K]` with every slot emptied
        with probability :obj:`kg_drop`."""
        drop = torch.rand(slot_entity.shape, generator=generator,
                          device=slot_entity.device) <= self.kg_drop
        return (slot_entity.masked_fill(drop, self.num_entities),
                slot_relation.masked_fill(drop, self.num_relations))

    def ui_views(self, edge_index: Tensor,
                 kg_views: Sequence[Sequence[Tensor]],
                 generator: Optional[torch.Generator] = None
                 ) -> List[Tensor]:
        r"""The two user-item views (normalised adjacencies) of the train
        pairs :obj:`edge_index` :obj:`[2, P]`, drawn as :obj:`augmentation`
        says (the weighted ones from the two :obj:`kg_views`)."""
        p, num = self.ui_drop, edge_index.size(1)
        device = edge_index.device

        def view(keep: Tensor) -> Tensor:
            return bipartite_adjacency(edge_index[:, keep], self.num_users,
                                       self.num_items)

        if self.augmentation == 'random':
            return [view(torch.randperm(
                num, generator=generator, device=device)[:int(num * (1 - p))])
                for _ in range(2)]
        with torch.no_grad():
            stability = F.cosine_similarity(
                self.item_embedding(*kg_views[0]),
                self.item_embedding(*kg_views[1]))
        weight = keep_probabilities(stability, p)
        views = []
        for _ in range(2):
            keep = torch.bernoulli(weight, generator=generator).bool()[
                edge_index[1]]
            if self.augmentation == 'weighted-mix':
                keep &= torch.rand(num, generator=generator,
                                   device=device) > 0.6
                keep[torch.randperm(num, generator=generator, device=device)[
                    :int(num * (1 - p))]] = True
            views.append(view(keep))
        return views

    def drop_edges(self, adj: Tensor,
                   generator: Optional[torch.Generator] = None) -> Tensor:
        r"""The main graph in training: the coalesced sparse COO
        :obj:`adj` with each entry dropped with probability
        :obj:`graph_dropout` and the kept ones scaled by :math:`1 / (1 -
        p)` (:obj:`adj` itself when :obj:`graph_dropout` is 0)."""
        rate = self.graph_dropout
        if rate == 0:
            return adj
        keep = torch.rand(adj.values().shape, generator=generator,
                          device=adj.device) >= rate
        return torch.sparse_coo_tensor(adj.indices()[:, keep],
                                       adj.values()[keep] / (1 - rate),
                                       adj.shape).coalesce()

    @staticmethod
    def info_nce(z1: Tensor, z2: Tensor, z_all: Tensor,
                 temperature: float) -> Tensor:
        r"""The authors' InfoNCE, summed over the rows of :obj:`z1`:
        :math:`-\log \frac{\exp(\cos(z_1, z_2) / \tau)}{\sum_k
        \exp(\cos(z_1, z_k) / \tau)}` over all rows :math:`z_k` of
        :obj:`z_all`."""
        pos = torch.exp(F.cosine_similarity(z1, z2) / temperature)
        total = torch.exp(F.normalize(z1) @ F.normalize(z_all).t() /
                          temperature).sum(dim=1)
        return -torch.log(pos / total).sum()

    def transe_loss(self, head: Tensor, relation: Tensor, pos_tail: Tensor,
                    neg_tail: Tensor, kg_l2_weight: float = 1e-3) -> Tensor:
        r"""TransE on item-entity triples (heads are items):
        :math:`-\log\sigma(\|h + r - t'\|^2 - \|h + r - t\|^2)` averaged,
        plus :obj:`kg_l2_weight` times the mean halved squared norms."""
        h, r = self.item_emb[head], self.relation_emb[relation]
        t, t_neg = self.entity_emb[pos_tail], self.entity_emb[neg_tail]
        pos = (h + r - t).square().sum(dim=1)
        neg = (h + r - t_neg).square().sum(dim=1)
        loss = -F.logsigmoid(neg - pos).mean()
        l2 = sum((v.square().sum(dim=1) / 2.0).mean() for v in (h, r, t,
                                                                t_neg))
        return loss + kg_l2_weight * l2

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, {self.num_entities}, '
                f'{self.num_relations}, embedding_dim={self.embedding_dim}, '
                f'num_layers={self.num_layers})')
