r"""The training recipe of :class:`~diffkg_pyg.DiffKG`."""
import time
from typing import Any, Dict, List, Tuple

import torch
from torch import Tensor

from diffkg_pyg import distributed
from diffkg_pyg.data.graph import has_kg
from diffkg_pyg.data.run_graph import RunGraph
from diffkg_pyg.hyperparameters import HyperParameter
from diffkg_pyg.nn.models.diffkg import PRESETS, DiffKG
from diffkg_pyg.nn.models.diffkg_loop import DiffKGLoop
from diffkg_pyg.train.context import TrainContext
from diffkg_pyg.train.recipe import Recipe, Sizes

__all__ = ['DiffKGRecipe']


class DiffKGRecipe(Recipe):
    r"""Trains :class:`~diffkg_pyg.DiffKG` as the method does. Every epoch
    runs, in order (the method notes, section 4):

    1. **diffusion**: one pass of denoiser steps over every KG head that has
       edges (shuffled, :obj:`batch_size` heads per step), with their own
       optimisers (:class:`torch.optim.Adam` for the dense parameters,
       :class:`~diffkg_pyg.optim.SparseRowAdam`, the update of
       :class:`torch.optim.SparseAdam`, for the entity tables, so that a
       step touches only the rows of its support);
    2. **rebuild**: the denoised KG (:meth:`DiffKG.rebuild_kg`);
    3. **recommendation**: one pass of BPR triples, each step on
       :meth:`DiffKG.loss` with the two KG views
       (:meth:`DiffKG.views`).

    With :obj:`diffusion=False` (the ablation) there is no denoiser and no
    rebuild; the sampled original KG feeds both views. The KG is sampled
    once (:meth:`DiffKG.sample_kg`); the two KGs, held by a
    :class:`~diffkg_pyg.nn.models.DiffKGLoop` beside the stateless model,
    are the recipe's state (checkpointed, kept with the best epoch and
    saved with the model). Evaluation and saved models encode with the
    main view's KG. A model trained by hand saves with its loop set on a
    recipe (:obj:`recipe.loop = loop`, then
    :func:`~diffkg_pyg.train.save_model`).
    """
    name = 'diffkg'
    description = ('DiffKG: knowledge-graph diffusion for recommendation '
                   '(Jiang et al., WSDM 2024)')
    presets = PRESETS
    inference_skip = ('denoiser.', )
    tiny = dict(embedding_dim=8, denoiser_hidden_channels=16,
                use_compile=False, batch_size=32, max_batches=2)
    model_class = DiffKG
    hyperparameters = DiffKG.hyperparameters + (
        HyperParameter('diffusion', bool, 'train the denoiser and rebuild '
                       'the KG (off: the ablation, the sampled original KG '
                       'in both views)', default=True), )

    def prepare(self, data, context: TrainContext) -> None:
        if not has_kg(data):  # Its diffusion and views need KG edges.
            raise ValueError('diffkg needs a knowledge graph and this '
                             'dataset has none (no KG edges: DiffRec '
                             'layout, or an emptied KG); train diffrec, '
                             'tdiffrec, lightgcn or mf on it')

    def build_model(self, sizes: Sizes) -> DiffKG:
        return DiffKG(sizes.num_users, sizes.num_items, sizes.num_entities,
                      sizes.num_relations, **self.model_kwargs)

    def setup(self, model: DiffKG, context: TrainContext, data) -> None:
        self.loop = DiffKGLoop(model, context.graph, context.generator)
        model.choose_noise_columns(context.device)

    def configure_optimizers(self, model: DiffKG, context: TrainContext
                             ) -> List[torch.optim.Optimizer]:
        group = model.configure_optimizers(context.lr, context.weight_decay)
        self.optimizer, *self.denoiser_optimizers = group.optimizers
        return group.optimizers

    def train_diffusion(self, model: DiffKG, context: TrainContext,
                        epoch: int) -> None:
        r"""Phase 1: one pass of denoiser steps."""
        heads = self.loop.shuffled_kg_heads(context.generator)
        for batch in context.progress(context.batches(heads),
                                      f'epoch {epoch} diffusion'):
            loss, terms = self.loop.denoising_loss(batch, context.generator)
            context.step(self.denoiser_optimizers, loss, 'denoiser_loss',
                         **terms)

    def train_recommendation(self, model: DiffKG, context: TrainContext,
                             epoch: int) -> None:
        r"""Phase 3: one pass of recommendation steps."""
        for user, pos, neg in context.bpr_batches(
                f'epoch {epoch} recommendation'):
            loss, terms = self.loop.recommendation_loss(
                user, pos, neg, context.shard_batch_size)
            context.step([self.optimizer], loss, **terms)

    def train_epoch(self, model: DiffKG, context: TrainContext,
                    epoch: int) -> Dict[str, Any]:
        start = time.perf_counter()
        if self.hparams['diffusion']:
            self.train_diffusion(model, context, epoch)
        diffusion_end = time.perf_counter()
        if self.hparams['diffusion']:
            self.loop.rebuild(batch_size=context.batch_size,
                              generator=context.generator)
            # Under torchrun, rank 0's denoiser and rebuilt KG on every
            # rank: kernels that are not deterministic (CUDA's scatter)
            # cannot make the ranks' KGs drift apart.
            distributed.broadcast_module(model.denoiser)
            self.loop.denoised_kg = distributed.broadcast_tensors(
                self.loop.denoised_kg)
        rebuild_end = time.perf_counter()
        self.train_recommendation(model, context, epoch)
        return {'kg_edges_kept': int(self.loop.denoised_kg[0].size(1)),
                'diffusion_seconds': diffusion_end - start,
                'rebuild_seconds': rebuild_end - diffusion_end,
                'recommendation_seconds': time.perf_counter() - rebuild_end}

    def embeddings(self, model: DiffKG) -> Tuple[Tensor, Tensor]:
        return self.loop.embeddings()

    def state_dict(self) -> Dict[str, Any]:
        return self.loop.state_dict()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if hasattr(self, 'loop'):
            self.loop.load_state_dict(state)
        else:  # A saved model's, before its model is built.
            self._saved_kgs = state

    def summary(self, model: DiffKG) -> Dict[str, Any]:
        columns = model.choose_noise_columns()
        return {'kg_edges_kept': int(self.loop.denoised_kg[0].size(1)),
                'noise_columns_used': -1 if columns is None else columns}

    def setup_inference(self, model: DiffKG,
                        train_edge_index: Tensor) -> None:
        state = self._saved_kgs
        graph = RunGraph(train_edge_index, model.num_users, model.num_items)
        self.loop = DiffKGLoop(model, graph, kgs=tuple(
            tuple(state[key]) for key in ('sampled_kg', 'denoised_kg')))
