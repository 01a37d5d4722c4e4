r"""The training recipe of :class:`~diffkg_pyg.nn.models.KGCL`."""
from typing import Any, Dict, Tuple

import torch
from torch import Tensor

from diffkg_pyg.csr import to_csr
from diffkg_pyg.data.graph import bipartite_adjacency, kg_triplets
from diffkg_pyg.hyperparameters import HyperParameter
from diffkg_pyg.nn.models.kgcl import KGCL, item_slots
from diffkg_pyg.train.context import TrainContext
from diffkg_pyg.train.recipe import Recipe, Sizes, require_relations
from diffkg_pyg.train.sampling import (
    interaction_keys,
    sample_negative_items,
    sample_row_entries,
)

__all__ = ['KGCLRecipe', 'KGCL_PRESETS']

#: The authors' settings per dataset (``code/world.py``; batch 2048).
KGCL_PRESETS: Dict[str, Dict[str, Any]] = {
    'amazon-book': dict(batch_size=2048, augmentation='weighted',
                        ui_drop=0.05, graph_dropout=0.2),
    'yelp2018': dict(batch_size=2048, augmentation='weighted', ui_drop=0.1,
                     graph_dropout=0.2),
    'mind': dict(batch_size=2048, lr=5e-4, l2_weight=1e-3,
                 augmentation='weighted-mix', ui_drop=0.4, graph_dropout=0.4,
                 num_slots=6, ssl_weight=0.06),
}


class KGCLRecipe(Recipe):
    r"""Trains :class:`~diffkg_pyg.nn.models.KGCL` as the authors' code
    does. Every epoch:

    1. **TransE**: the items with triplets, in order, in full batches of
       :obj:`kg_batch_size` (a last partial batch is dropped), each with one
       of its triplets drawn uniformly and a tail drawn from another head's
       triplets, not a triplet of its own (:meth:`KGCL.transe_loss
       <diffkg_pyg.nn.models.KGCL.transe_loss>`);
    2. **views**: two KG views (:meth:`KGCL.kg_view
       <diffkg_pyg.nn.models.KGCL.kg_view>`) and two user-item views of
       the train interactions (:meth:`KGCL.ui_views
       <diffkg_pyg.nn.models.KGCL.ui_views>`);
    3. **joint**: one sample per train interaction (its user, a train item
       and a non-train item of that user drawn uniformly), shuffled, in
       full batches of :obj:`batch_size`, each a step of
       :meth:`KGCL.loss <diffkg_pyg.nn.models.KGCL.loss>` (BPR and the
       views' InfoNCE) on the main graph (:meth:`KGCL.drop_edges
       <diffkg_pyg.nn.models.KGCL.drop_edges>`), one
       :class:`torch.optim.Adam` (shared with TransE)."""
    name = 'kgcl'
    description = ('KGCL: knowledge-graph contrastive learning (Yang et '
                   'al., SIGIR 2022)')
    presets = KGCL_PRESETS
    setting_aliases = {'batch_size': ('bpr_batch', ),
                       'eval_batch_size': ('testbatch', )}
    tiny = dict(embedding_dim=8, num_layers=2, kg_batch_size=8,
                batch_size=32, max_batches=2)
    model_class = KGCL
    hyperparameters = KGCL.hyperparameters + (
        HyperParameter('kg_batch_size', int, 'heads per TransE step', 4096,
                       range='[1, inf)'),
    )

    def prepare(self, data, context: TrainContext) -> None:
        require_relations(data, 'kgcl')
        sizes = Sizes.from_data(data)
        triplets = kg_triplets(data)
        self.triplets = triplets[:, triplets[0] < sizes.num_items]
        self.num_base_relations = max(sizes.num_relations // 2, 1)
        self.slots = item_slots(self.triplets, sizes.num_items,
                                self.hparams['num_slots'],
                                sizes.num_entities, self.num_base_relations)

    def build_model(self, sizes: Sizes) -> KGCL:
        self.num_users, self.num_items = sizes.num_users, sizes.num_items
        self.num_base_relations = max(sizes.num_relations // 2, 1)
        return KGCL(sizes.num_users, sizes.num_items, sizes.num_entities,
                    self.num_base_relations, **self.model_kwargs)

    def setup_inference(self, model: KGCL, train_edge_index: Tensor) -> None:
        device = train_edge_index.device
        self.train_edge_index = train_edge_index
        self.train_keys = interaction_keys(train_edge_index, self.num_items)
        self.triplets = self.triplets.to(device)
        self.slots = tuple(s.to(device) for s in self.slots)
        self.adj = bipartite_adjacency(train_edge_index, self.num_users,
                                       self.num_items)
        self._adj_coo = None

    def main_graph(self, model: KGCL, generator: torch.Generator) -> Tensor:
        if model.graph_dropout == 0:
            return self.adj
        if self._adj_coo is None:  # Built once: the graph is fixed.
            self._adj_coo = self.adj.to_sparse_coo().coalesce()
        return model.drop_edges(self._adj_coo, generator)

    # -- training -------------------------------------------------------------
    def train_transe(self, model: KGCL, context: TrainContext) -> None:
        head, relation, tail = self.triplets
        heads = torch.unique(head)
        size = self.hparams['kg_batch_size']
        gen = context.generator
        # The triplets grouped by head: ptr and their positions.
        ptr, perm = to_csr(torch.stack([head, torch.arange(
            head.numel(), device=head.device)]), self.num_items)
        num_types = self.num_base_relations + 1
        known = torch.stack([head * num_types + relation, tail])
        keys = interaction_keys(known, model.num_entities + 1)

        def other_heads_tail(n: int) -> Tensor:
            # A tail of a head drawn uniformly (the authors' negatives).
            other = heads[torch.randint(heads.numel(), (n, ), generator=gen,
                                        device=heads.device)]
            return tail[perm[sample_row_entries(ptr, other, gen)]]

        for batch in context.progress(
                list(heads.split(size))[:heads.numel() // size][
                    :context.max_batches], 'transe'):
            pick = perm[sample_row_entries(ptr, batch, gen)]
            r, t = relation[pick], tail[pick]
            neg = sample_negative_items(batch * num_types + r, known,
                                        model.num_entities + 1, gen,
                                        draw=other_heads_tail, keys=keys)
            loss = model.transe_loss(batch, r, t, neg,
                                     self.hparams['kg_l2_weight'])
            context.step(context.optimizers, loss, 'transe_loss')

    def train_epoch(self, model: KGCL, context: TrainContext,
                    epoch: int) -> Dict[str, Any]:
        gen = context.generator
        self.train_transe(model, context)
        kg_views = [model.kg_view(*self.slots, gen) for _ in range(2)]
        views = list(zip(model.ui_views(self.train_edge_index, kg_views,
                                        gen), kg_views))
        user_all = self.train_edge_index[0]
        ptr, items = context.graph.train_csr  # Built once per run.
        perm = torch.randperm(user_all.numel(), generator=gen,
                              device=user_all.device)
        size = context.batch_size
        batches = list(perm.split(size))[:perm.numel() // size]
        for batch in context.progress(batches[:context.max_batches],
                                      f'epoch {epoch}'):
            user = user_all[batch]
            pos = items[sample_row_entries(ptr, user, gen)]
            neg = sample_negative_items(user, self.train_edge_index,
                                        self.num_items, gen,
                                        keys=self.train_keys)
            part = context.shard(torch.arange(user.numel(),
                                              device=user.device))
            user, pos, neg = user[part], pos[part], neg[part]
            # The sums over the batch are this process's mean times the
            # batch size (exact under torchrun; batches are full).
            loss, bpr, ssl = model.loss(
                self.main_graph(model, gen), self.slots, views, user, pos,
                neg, self.hparams['l2_weight'], self.hparams['ssl_weight'],
                self.hparams['temperature'], batch_size=size)
            context.step(context.optimizers, loss, bpr=bpr, ssl=ssl)
        return {}

    def embeddings(self, model: KGCL) -> Tuple[Tensor, Tensor]:
        return model(self.adj, *self.slots)

    def state_dict(self) -> Dict[str, Any]:
        return {'triplets': self.triplets, 'slots': self.slots}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.triplets, self.slots = state['triplets'], tuple(state['slots'])
