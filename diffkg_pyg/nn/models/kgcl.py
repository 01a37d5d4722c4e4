r"""KGCL: knowledge-graph contrastive learning for recommendation."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter

from diffkg_pyg.nn.conv.kgcl_conv import KGCLConv

__all__ = ['KGCL', 'item_slots']


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
    mean of the layers. The training signals (:meth:`bpr_loss`,
    :meth:`info_nce`, :meth:`transe_loss`) are those of the authors' code:
    BPR summed over the batch with the L2 term of the layer-0 user and item
    embeddings; the InfoNCE between two augmented views of users and items
    (each view: the items' slots with entities dropped, propagated over the
    user-item graph with interactions dropped); TransE on the item-entity
    triplets.

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
        num_entities (int): The number of entities slot tails index (a
            padding entity :obj:`num_entities` is added).
        num_relations (int): The number of relations (a padding relation is
            added).
        embedding_dim (int, optional): Embedding size. (default: :obj:`64`)
        num_layers (int, optional): LightGCN layers. (default: :obj:`3`)
        kg_dropout (float, optional): The dropouts of the knowledge
            aggregation. (default: :obj:`0.4`)

    Shapes:
        - **input:** the normalised user-item adjacency (sparse
          :obj:`[U + I, U + I]`, users first), slot entities and relations
          :obj:`[I, K]`
        - **output:** user embeddings :obj:`[U, d]` and item embeddings
          :obj:`[I, d]`
    """
    def __init__(self, num_users: int, num_items: int, num_entities: int,
                 num_relations: int, embedding_dim: int = 64,
                 num_layers: int = 3, kg_dropout: float = 0.4) -> None:
        super().__init__()
        for name, value in (('num_users', num_users),
                            ('num_items', num_items),
                            ('num_entities', num_entities),
                            ('embedding_dim', embedding_dim)):
            if value < 1:
                raise ValueError(f"'{name}' must be >= 1 (got {value})")
        if num_layers < 0 or num_relations < 0:
            raise ValueError(f"'num_layers' and 'num_relations' must be >= 0 "
                             f'(got {num_layers}, {num_relations})')
        if not 0.0 <= kg_dropout < 1.0:
            raise ValueError(f"'kg_dropout' must lie in [0, 1) (got "
                             f'{kg_dropout})')
        self.num_users = num_users
        self.num_items = num_items
        self.num_entities = num_entities
        self.num_relations = num_relations
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.kg_dropout = kg_dropout
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
                 pos_item: Tensor, neg_item: Tensor, l2_weight: float = 1e-4,
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

    @staticmethod
    def info_nce(z1: Tensor, z2: Tensor, z_all: Tensor,
                 temperature: float = 0.2) -> Tensor:
        r"""The authors' InfoNCE, summed over the rows of :obj:`z1`:
        :math:`-\log \frac{\exp(\cos(z_1, z_2) / \tau)}{\sum_k
        \exp(\cos(z_1, z_k) / \tau)}` over all rows :math:`z_k` of
        :obj:`z_all`."""
        pos = torch.exp(F.cosine_similarity(z1, z2) / temperature)
        total = torch.exp(F.normalize(z1) @ F.normalize(z_all).t() /
                          temperature).sum(dim=1)
        return -torch.log(pos / total).sum()

    def transe_loss(self, head: Tensor, relation: Tensor, pos_tail: Tensor,
                    neg_tail: Tensor, l2_weight: float = 1e-3) -> Tensor:
        r"""TransE on item-entity triples (heads are items):
        :math:`-\log\sigma(\|h + r - t'\|^2 - \|h + r - t\|^2)` averaged,
        plus :obj:`l2_weight` times the mean halved squared norms."""
        h, r = self.item_emb[head], self.relation_emb[relation]
        t, t_neg = self.entity_emb[pos_tail], self.entity_emb[neg_tail]
        pos = (h + r - t).square().sum(dim=1)
        neg = (h + r - t_neg).square().sum(dim=1)
        loss = -F.logsigmoid(neg - pos).mean()
        l2 = sum((v.square().sum(dim=1) / 2.0).mean() for v in (h, r, t,
                                                                t_neg))
        return loss + l2_weight * l2

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, {self.num_entities}, '
                f'{self.num_relations}, embedding_dim={self.embedding_dim}, '
                f'num_layers={self.num_layers})')
