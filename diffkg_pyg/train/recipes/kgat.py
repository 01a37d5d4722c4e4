r"""The training recipe of :class:`~diffkg_pyg.nn.models.KGAT`."""
from typing import Any, Dict, List, Tuple

import torch
from torch import Tensor

from diffkg_pyg.csr import to_csr
from diffkg_pyg.data.graph import kg_triplets
from diffkg_pyg.hyperparameters import HyperParameter
from diffkg_pyg.nn.models.kgat import KGAT, collaborative_kg
from diffkg_pyg.train.context import TrainContext
from diffkg_pyg.train.persistence import load_model
from diffkg_pyg.train.recipe import Recipe, Sizes, require_relations
from diffkg_pyg.train.recipes.kgin import kgin_edges
from diffkg_pyg.train.sampling import (
    sample_negative_items,
    sample_row_entries,
)

__all__ = ['KGATRecipe', 'KGAT_PRESETS', 'sample_user_batch',
           'sample_kg_batch']

# The authors' published setting (their README and the port's defaults):
# lr 1e-4, batch 1024, KG batch 2048, dim 64, layers [64, 32, 16], message
# dropout 0.1, both L2 weights 1e-5, bi-interaction.
_RELEASED = dict(lr=1e-4, batch_size=1024, kg_batch_size=2048,
                 embedding_dim=64, relation_dim=64,
                 hidden_channels=(64, 32, 16), dropout=0.1, l2_weight=1e-5,
                 kg_l2_weight=1e-5, aggregator='bi-interaction')

#: KGAT's released settings for the datasets it published (without the
#: BPR-MF pretraining, which ``pretrain`` adds).
KGAT_PRESETS: Dict[str, Dict[str, Any]] = {
    name: dict(_RELEASED) for name in ('amazon-book', 'last-fm', 'yelp2018')
}


def _rows_with_an_edge(edge_index: Tensor, num_rows: int, batch_size: int,
                       generator: torch.Generator) -> Tuple[Tensor, Tensor]:
    # batch_size rows of edge_index[0] drawn uniformly among those with
    # edges (without replacement when there are enough), and one of each
    # row's edges drawn uniformly (its position in edge_index).
    edge = torch.arange(edge_index.size(1), device=edge_index.device)
    ptr, perm = to_csr(torch.stack([edge_index[0], edge]), num_rows)
    rows = torch.nonzero(ptr[1:] > ptr[:-1]).view(-1)
    if batch_size <= rows.numel():
        row = rows[torch.randperm(rows.numel(), generator=generator,
                                  device=rows.device)[:batch_size]]
    else:
        row = rows[torch.randint(rows.numel(), (batch_size, ),
                                 generator=generator, device=rows.device)]
    return row, perm[sample_row_entries(ptr, row, generator)]


def sample_user_batch(edge_index: Tensor, num_users: int, num_items: int,
                      batch_size: int, generator: torch.Generator
                      ) -> Tuple[Tensor, Tensor, Tensor]:
    r"""The port's CF batch: :obj:`batch_size` users drawn uniformly among
    those with train items (without replacement when there are enough),
    each with one train item and one non-train item drawn uniformly."""
    user, edge = _rows_with_an_edge(edge_index, num_users, batch_size,
                                    generator)
    neg = sample_negative_items(user, edge_index, num_items, generator)
    return user, edge_index[1, edge], neg


def sample_kg_batch(edge_index: Tensor, edge_type: Tensor, num_nodes: int,
                    batch_size: int, generator: torch.Generator
                    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""The port's KG batch: :obj:`batch_size` heads drawn uniformly among
    the nodes with edges (without replacement when there are enough), each
    with one of its typed edges drawn uniformly and a tail drawn uniformly
    among the nodes it has no edge of that relation to."""
    head, edge = _rows_with_an_edge(edge_index, num_nodes, batch_size,
                                    generator)
    relation, tail = edge_type[edge], edge_index[1, edge]
    num_types = int(edge_type.max()) + 1
    known = torch.stack([edge_index[0] * num_types + edge_type,
                         edge_index[1]])
    neg = sample_negative_items(head * num_types + relation, known,
                                num_nodes, generator)
    return head, relation, tail, neg


def _shard(context: TrainContext, batch: Tuple[Tensor, ...]
           ) -> Tuple[Tensor, ...]:
    # This process's part of a batch drawn whole (the same on every rank).
    keep = context.shard(torch.arange(batch[0].numel(),
                                      device=batch[0].device))
    return tuple(t[keep] for t in batch)


class KGATRecipe(Recipe):
    r"""Trains :class:`~diffkg_pyg.nn.models.KGAT` as its PyTorch port does.
    Every epoch:

    1. **CF**: :obj:`num_train // batch_size + 1` steps of
       :meth:`KGAT.cf_loss <diffkg_pyg.nn.models.KGAT.cf_loss>` on batches
       of users (:func:`sample_user_batch`), each after a full propagation;
    2. **KG**: :obj:`num_edges // kg_batch_size + 1` steps of
       :meth:`KGAT.kg_loss <diffkg_pyg.nn.models.KGAT.kg_loss>` on typed
       triples of the collaborative knowledge graph
       (:func:`sample_kg_batch`), with a second :class:`torch.optim.Adam`;
    3. **attention**: :meth:`KGAT.attention
       <diffkg_pyg.nn.models.KGAT.attention>` recomputes the weights
       (unless :obj:`attention` is off: the fixed normalised adjacency,
       one reading of the authors' TensorFlow code).

    With :obj:`pretrain` (a model of the package's ``mf`` saved with
    ``--save-model``), users and items start from its embeddings, as the
    authors' runs start from BPR-MF. The collaborative knowledge graph and
    the weights are the recipe's state."""
    name = 'kgat'
    description = ('KGAT: attentive propagation over the collaborative '
                   'knowledge graph (Wang et al., KDD 2019)')
    presets = KGAT_PRESETS
    setting_aliases = {'batch_size': ('cf_batch_size', ),
                       'eval_batch_size': ('test_batch_size', ),
                       'epochs': ('n_epoch', )}
    tiny = dict(embedding_dim=8, relation_dim=4, hidden_channels=(8, 4),
                kg_batch_size=32, batch_size=32, max_batches=2)
    model_class = KGAT
    hyperparameters = KGAT.hyperparameters + (
        HyperParameter('kg_batch_size', int, 'triples per TransR step',
                       2048, range='[1, inf)'),
        HyperParameter('attention', bool, 'recompute the attention after '
                       'every epoch (off: the normalised adjacency)', True),
        HyperParameter('pretrain', str, 'a saved mf model whose embeddings '
                       'users and items start from (empty: none)', '',
                       compared=False))

    def prepare(self, data, context: TrainContext) -> None:
        require_relations(data, 'kgat')
        sizes = Sizes.from_data(data)
        kg = kgin_edges(kg_triplets(data), sizes.num_relations)
        train = context.train_edge_index.cpu()
        self.edge_index, self.edge_type = collaborative_kg(
            train, kg[:2], kg[2], sizes.num_entities)
        num_nodes = sizes.num_entities + sizes.num_users
        self.pairs, self.pair = KGAT.pairs(self.edge_index, num_nodes)
        self.weight = KGAT.initial_weights(self.edge_index, self.edge_type,
                                           self.pair, self.pairs.size(1))

    def build_model(self, sizes: Sizes) -> KGAT:
        self.num_items = sizes.num_items
        return KGAT(sizes.num_users, sizes.num_entities, sizes.num_relations,
                    **self.model_kwargs)

    def setup(self, model: KGAT, context: TrainContext, data) -> None:
        if self.hparams['pretrain']:
            self._load_pretrained(model)
        self.setup_inference(model, context.train_edge_index)

    def _load_pretrained(self, model: KGAT) -> None:
        path = self.hparams['pretrain']
        mf = load_model(path).model
        user, item = getattr(mf, 'user_emb', None), getattr(mf, 'item_emb',
                                                            None)
        if user is None or item is None or \
                user.shape != model.user_emb.shape or \
                item.size(0) > model.num_entities or \
                item.size(1) != model.embedding_dim:
            raise ValueError(f'pretrain={path!r}: not an mf model of this '
                             f'dataset with embedding_dim '
                             f'{model.embedding_dim}')
        with torch.no_grad():
            model.user_emb.copy_(user)
            model.entity_emb[:item.size(0)].copy_(item)

    def setup_inference(self, model: KGAT, train_edge_index: Tensor) -> None:
        device = train_edge_index.device
        self.train_edge_index = train_edge_index
        for name in ('edge_index', 'edge_type', 'pairs', 'pair', 'weight'):
            setattr(self, name, getattr(self, name).to(device))

    def configure_optimizers(self, model: KGAT, context: TrainContext
                             ) -> List[torch.optim.Optimizer]:
        return [torch.optim.Adam(model.parameters(), lr=context.lr,
                                 weight_decay=context.weight_decay)
                for _ in range(2)]

    def train_epoch(self, model: KGAT, context: TrainContext,
                    epoch: int) -> Dict[str, Any]:
        cf_optimizer, kg_optimizer = context.optimizers
        num_users = model.num_users
        num_nodes = model.num_entities + num_users
        steps = range(self.train_edge_index.size(1) // context.batch_size + 1)
        for _ in context.progress(steps[:context.max_batches],
                                  f'epoch {epoch} cf'):
            user, pos, neg = _shard(context, sample_user_batch(
                self.train_edge_index, num_users, self.num_items,
                context.batch_size, context.generator))
            out = model(self.pairs, self.weight)
            loss, bpr = model.cf_loss(out, user, pos, neg,
                                      self.hparams['l2_weight'])
            context.step([cf_optimizer], loss, bpr=bpr)
        size = self.hparams['kg_batch_size']
        steps = range(self.edge_index.size(1) // size + 1)
        for _ in context.progress(steps[:context.max_batches],
                                  f'epoch {epoch} kg'):
            head, relation, tail, neg = _shard(context, sample_kg_batch(
                self.edge_index, self.edge_type, num_nodes, size,
                context.generator))
            loss, transr = model.kg_loss(head, relation, tail, neg,
                                         self.hparams['kg_l2_weight'])
            context.step([kg_optimizer], loss, 'kg_loss', transr=transr)
        if self.hparams['attention']:
            self.weight = model.attention(self.edge_index, self.edge_type,
                                          self.pairs, self.pair)
        return {}

    def embeddings(self, model: KGAT) -> Tuple[Tensor, Tensor]:
        out = model(self.pairs, self.weight)
        return out[model.num_entities:], out[:self.num_items]

    def state_dict(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in
                ('edge_index', 'edge_type', 'pairs', 'pair', 'weight')}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)
