r"""The training recipe of :class:`~diffkg_pyg.nn.models.KGCL`."""
from typing import Any, Dict, Tuple

import torch
from torch import Tensor

from diffkg_pyg.csr import to_csr
from diffkg_pyg.data.graph import bipartite_adjacency, kg_triplets
from diffkg_pyg.hyperparameters import HyperParameter, Space, from_signature
from diffkg_pyg.nn.models.kgcl import KGCL, item_slots
from diffkg_pyg.train.context import TrainContext
from diffkg_pyg.train.recipe import Recipe, Sizes, require_relations
from diffkg_pyg.train.sampling import (
    interaction_keys,
    sample_negative_items,
    sample_row_entries,
)

__all__ = ['KGCLRecipe', 'KGCL_PRESETS', 'AUGMENTATIONS',
           'keep_probabilities']

#: How the user-item views are augmented (the code's ``uicontrast``).
AUGMENTATIONS = ('random', 'weighted', 'weighted-mix')

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


class KGCLRecipe(Recipe):
    r"""Trains :class:`~diffkg_pyg.nn.models.KGCL` as the authors' code
    does. Every epoch:

    1. **TransE**: the items with triplets, in order, in full batches of
       :obj:`kg_batch_size` (a last partial batch is dropped), each with one
       of its triplets drawn uniformly and a tail drawn from another head's
       triplets, not a triplet of its own (:meth:`KGCL.transe_loss
       <diffkg_pyg.nn.models.KGCL.transe_loss>`);
    2. **views**: two KG views (every slot emptied with probability
       :obj:`kg_drop`) and two user-item views: :obj:`'random'` keeps
       :obj:`1 - ui_drop` of the interactions; :obj:`'weighted'` (the
       consistency-guided augmentation) keeps the interactions of each item
       with a probability from the agreement (cosine) of its embeddings
       under the two KG views: :math:`\exp`, min-max scaled, floored at
       0.3, rescaled to mean :math:`1 - \mathrm{ui\_drop}`, capped at 0.95;
       :obj:`'weighted-mix'` (MIND) keeps 40 % of those and adds
       :math:`1 - \mathrm{ui\_drop}` of all interactions at random;
    3. **joint**: one sample per train interaction (its user, a train item
       and a non-train item of that user drawn uniformly), shuffled, in
       full batches of :obj:`batch_size`: BPR (summed) with its L2 term
       plus :obj:`ssl_weight` times the users' and the items' InfoNCE
       between the two views (:meth:`KGCL.info_nce
       <diffkg_pyg.nn.models.KGCL.info_nce>`), one
       :class:`torch.optim.Adam` (shared with TransE)."""
    name = 'kgcl'
    description = ('KGCL: knowledge-graph contrastive learning (Yang et '
                   'al., SIGIR 2022)')
    presets = KGCL_PRESETS
    setting_aliases = {'batch_size': ('bpr_batch', ),
                       'eval_batch_size': ('testbatch', )}
    tiny = dict(embedding_dim=8, num_layers=2, kg_batch_size=8,
                batch_size=32, max_batches=2)
    hyperparameters = from_signature(
        KGCL,
        HyperParameter('embedding_dim', int, 'embedding size',
                       aliases=('recdim', ), range='[1, inf)'),
        HyperParameter('num_layers', int, 'LightGCN layers',
                       aliases=('layer', ), range='[0, inf)',
                       space=Space(1, 4)),
        HyperParameter('kg_dropout', float, 'the dropouts of the knowledge '
                       'aggregation', range='[0, 1)'),
    ) + (
        HyperParameter('num_slots', int, 'entities per item (the first '
                       'ones)', 10, aliases=('entity_num_per_item', ),
                       range='[1, inf)'),
        HyperParameter('kg_drop', float, 'slot drop probability of the KG '
                       'views', 0.5, aliases=('kg_p_drop', ),
                       range='[0, 1]', space=Space(0.1, 0.9)),
        HyperParameter('augmentation', str, 'how the user-item views are '
                       'drawn', 'random', aliases=('uicontrast', ),
                       choices=AUGMENTATIONS),
        HyperParameter('ui_drop', float, 'the drop rate of the user-item '
                       'views', 0.001, aliases=('ui_p_drop', ),
                       range='[0, 1)', space=Space(0.0, 0.5)),
        HyperParameter('graph_dropout', float, 'edge dropout of the main '
                       "graph (the code's 1 - keepprob with --dropout 1)",
                       0.0, aliases=('keepprob', ), from_alias=_keep_rate,
                       alias_type=float, range='[0, 1)'),
        HyperParameter('ssl_weight', float, 'weight of the InfoNCE terms',
                       0.1, aliases=('ssl_reg', ), range='[0, inf)',
                       space=Space(0.01, 1.0, log=True)),
        HyperParameter('temperature', float, 'InfoNCE temperature', 0.2,
                       aliases=('kgc_temp', ), range='(0, inf)',
                       space=Space(0.05, 1.0, log=True)),
        HyperParameter('l2_weight', float, 'L2 weight of the BPR loss',
                       1e-4, aliases=('decay', ), range='[0, inf)',
                       space=Space(1e-6, 1e-2, log=True)),
        HyperParameter('kg_l2_weight', float, 'L2 weight of TransE', 1e-3,
                       range='[0, inf)'),
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
                    self.num_base_relations,
                    **{k: self.hparams[k] for k in ('embedding_dim',
                                                    'num_layers',
                                                    'kg_dropout')})

    def setup_inference(self, model: KGCL, train_edge_index: Tensor) -> None:
        device = train_edge_index.device
        self.train_edge_index = train_edge_index
        self.train_keys = interaction_keys(train_edge_index, self.num_items)
        self.triplets = self.triplets.to(device)
        self.slots = tuple(s.to(device) for s in self.slots)
        self.adj = bipartite_adjacency(train_edge_index, self.num_users,
                                       self.num_items)
        self._adj_coo = None

    # -- augmentation --------------------------------------------------------
    def kg_view(self, model: KGCL, generator: torch.Generator) -> Tuple:
        entity, relation = self.slots
        drop = torch.rand(entity.shape, generator=generator,
                          device=entity.device) <= self.hparams['kg_drop']
        return (entity.masked_fill(drop, model.num_entities),
                relation.masked_fill(drop, self.num_base_relations))

    def ui_view(self, keep: Tensor) -> Tensor:
        return bipartite_adjacency(self.train_edge_index[:, keep],
                                   self.num_users, self.num_items)

    def ui_views(self, model: KGCL, kg_views, generator: torch.Generator):
        edge_index, p = self.train_edge_index, self.hparams['ui_drop']
        num = edge_index.size(1)
        device = edge_index.device
        mode = self.hparams['augmentation']
        if mode == 'random':
            return [self.ui_view(torch.randperm(
                num, generator=generator, device=device)[:int(num * (1 - p))])
                for _ in range(2)]
        with torch.no_grad():
            stability = torch.nn.functional.cosine_similarity(
                model.item_embedding(*kg_views[0]),
                model.item_embedding(*kg_views[1]))
        weight = keep_probabilities(stability, p)
        views = []
        for _ in range(2):
            keep = torch.bernoulli(weight, generator=generator).bool()[
                edge_index[1]]
            if mode == 'weighted-mix':
                keep &= torch.rand(num, generator=generator,
                                   device=device) > 0.6
                keep[torch.randperm(num, generator=generator, device=device)[
                    :int(num * (1 - p))]] = True
            views.append(self.ui_view(keep))
        return views

    def main_graph(self, generator: torch.Generator) -> Tensor:
        rate = self.hparams['graph_dropout']
        if rate == 0:
            return self.adj
        if self._adj_coo is None:  # Built once: the graph is fixed.
            self._adj_coo = self.adj.to_sparse_coo().coalesce()
        adj = self._adj_coo
        keep = torch.rand(adj.values().shape, generator=generator,
                          device=adj.device) >= rate
        return torch.sparse_coo_tensor(adj.indices()[:, keep],
                                       adj.values()[keep] / (1 - rate),
                                       adj.shape).coalesce()

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
        kg_views = [self.kg_view(model, gen) for _ in range(2)]
        ui_views = self.ui_views(model, kg_views, gen)
        user_all = self.train_edge_index[0]
        ptr, items = to_csr(self.train_edge_index, self.num_users)
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
            user_out, item_out = model(self.main_graph(gen), *self.slots)
            # The sums over the batch are this process's mean times the
            # batch size (exact under torchrun; batches are full).
            loss, bpr = model.bpr_loss(user_out, item_out, user, pos, neg,
                                       self.hparams['l2_weight'],
                                       batch_size=size)
            (u1, i1), (u2, i2) = (model(ui_views[k], *kg_views[k])
                                  for k in range(2))
            tau = self.hparams['temperature']
            ssl = (model.info_nce(u1[user], u2[user], u2, tau) +
                   model.info_nce(i1[pos], i2[pos], i2, tau)) * \
                (size / max(user.numel(), 1))
            context.step(context.optimizers,
                         loss + self.hparams['ssl_weight'] * ssl, bpr=bpr,
                         ssl=ssl.detach())
        return {}

    def embeddings(self, model: KGCL) -> Tuple[Tensor, Tensor]:
        return model(self.adj, *self.slots)

    def state_dict(self) -> Dict[str, Any]:
        return {'triplets': self.triplets, 'slots': self.slots}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.triplets, self.slots = state['triplets'], tuple(state['slots'])
