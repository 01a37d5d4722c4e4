r"""The training recipe of :class:`~diffkg_pyg.nn.models.KGIN`."""
from typing import Any, Dict, Tuple

import torch
from torch import Tensor

from diffkg_pyg.data.graph import kg_triplets
from diffkg_pyg.nn.models.kgin import KGIN
from diffkg_pyg.train.context import TrainContext
from diffkg_pyg.train.recipe import Recipe, Sizes, require_relations

__all__ = ['KGINRecipe', 'KGIN_PRESETS', 'kgin_edges']

# The authors' README commands (lr 1e-4, batch 1024, dim 64, 3 hops, node
# dropout 0.5, message dropout 0.1, the independence weight per dataset).
_RELEASED = dict(lr=1e-4, batch_size=1024, embedding_dim=64, num_layers=3,
                 node_dropout=0.5, dropout=0.1, independence_weight=1e-4)

#: The released settings of KGIN for the datasets it published.
KGIN_PRESETS: Dict[str, Dict[str, Any]] = {
    'last-fm': dict(_RELEASED),
    'alibaba-ifashion': dict(_RELEASED),
    'amazon-book': dict(_RELEASED, independence_weight=1e-5),
}


def kgin_edges(triplets: Tensor, num_relations: int) -> Tensor:
    r"""KGIN's knowledge graph from the unique triplets :obj:`[3, T]`:
    every triplet :math:`(h, r, t)` as the edge :math:`h \leftarrow t` of
    type :math:`r` and its inverse :math:`t \leftarrow h` of type :math:`r +
    R_0` (:math:`R_0` = :obj:`num_relations / 2`), all of them, also where
    several relations join one pair (the authors' multigraph). Returns the
    edges :obj:`[2, 2T]` (heads, tails) stacked over their types
    :obj:`[1, 2T]`, as one :obj:`[3, 2T]` tensor."""
    head, relation, tail = triplets
    half = num_relations // 2
    return torch.stack([torch.cat([head, tail]), torch.cat([tail, head]),
                        torch.cat([relation, relation + half])])


class KGINRecipe(Recipe):
    r"""Trains :class:`~diffkg_pyg.nn.models.KGIN` as the authors' code
    does: every epoch one negative item per train interaction (uniform
    among the user's non-train items), each step a full propagation
    (:meth:`KGIN.forward <diffkg_pyg.nn.models.KGIN.forward>`, with node
    and message dropout) and :meth:`KGIN.loss
    <diffkg_pyg.nn.models.KGIN.loss>`, one :class:`torch.optim.Adam`.
    Scores are dot products of the final user and item embeddings.

    The knowledge graph is every unique triplet and its inverse
    (:func:`kgin_edges`), kept as the recipe's state so that saved models
    have it."""
    name = 'kgin'
    description = ('KGIN: intents behind interactions over the knowledge '
                   'graph (Wang et al., WWW 2021)')
    presets = KGIN_PRESETS
    setting_aliases = {'eval_batch_size': ('test_batch_size', )}
    tiny = dict(embedding_dim=8, num_layers=2, batch_size=32, max_batches=2)
    model_class = KGIN

    def prepare(self, data, context: TrainContext) -> None:
        require_relations(data, 'kgin')
        self.kg = kgin_edges(kg_triplets(data), Sizes.from_data(
            data).num_relations)

    def build_model(self, sizes: Sizes) -> KGIN:
        self.num_items = sizes.num_items
        return KGIN(sizes.num_users, sizes.num_entities, sizes.num_relations,
                    **self.model_kwargs)

    def setup_inference(self, model: KGIN, train_edge_index: Tensor) -> None:
        self.train_edge_index = train_edge_index
        self.kg = self.kg.to(train_edge_index.device)

    def train_epoch(self, model: KGIN, context: TrainContext,
                    epoch: int) -> Dict[str, Any]:
        edge_index, edge_type = self.kg[:2], self.kg[2]
        for user, pos, neg in context.bpr_batches(f'epoch {epoch}'):
            user_out, entity_out = model(self.train_edge_index, edge_index,
                                         edge_type, context.generator)
            loss, bpr, independence = model.loss(
                user_out, entity_out, user, pos, neg,
                self.hparams['l2_weight'],
                self.hparams['independence_weight'],
                batch_size=context.shard_batch_size)
            context.step(context.optimizers, loss, bpr=bpr,
                         independence=independence)
        return {}

    def embeddings(self, model: KGIN) -> Tuple[Tensor, Tensor]:
        user_out, entity_out = model(self.train_edge_index, self.kg[:2],
                                     self.kg[2])
        return user_out, entity_out[:self.num_items]

    def state_dict(self) -> Dict[str, Any]:
        return {'kg': self.kg}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.kg = state['kg']
