r"""The training recipes of :class:`~diffkg_pyg.DiffRec` and
:class:`~diffkg_pyg.TDiffRec`."""
from typing import Any, Callable, Dict, List

import torch
from torch import Tensor

from diffkg_pyg.data.graph import USER_ITEM
from diffkg_pyg.nn.diffusion import SCHEDULES
from diffkg_pyg.nn.models.diffrec import (
    DIFFREC_PRESETS,
    MEAN_TYPES,
    DiffRec,
    TDiffRec,
)
from diffkg_pyg.train.hyperparameters import HyperParameter, from_signature
from diffkg_pyg.train.recipe import Recipe, Sizes
from diffkg_pyg.utils import to_csr

__all__ = ['DiffRecRecipe', 'TDiffRecRecipe']

_DIFFREC_PARAMETERS = (
    HyperParameter('hidden_channels', tuple, "the denoiser's sizes (the "
                   'decoder side; the encoder mirrors them)',
                   aliases=('dims', )),
    HyperParameter('time_channels', int, 'size of the step embedding',
                   aliases=('emb_size', )),
    HyperParameter('norm', bool, "L2-normalise the denoiser's input"),
    HyperParameter('dropout', float, "the denoiser's input dropout"),
    HyperParameter('mean_type', str, 'what the denoiser predicts',
                   choices=MEAN_TYPES),
    HyperParameter('diffusion_steps', int, 'diffusion steps',
                   aliases=('steps', )),
    HyperParameter('noise_schedule', str, 'the noise schedule',
                   choices=SCHEDULES),
    HyperParameter('noise_scale', float, 'noise scale of the schedule'),
    HyperParameter('noise_min', float, 'lower noise bound of the schedule'),
    HyperParameter('noise_max', float, 'upper noise bound of the schedule'),
    HyperParameter('reweight', bool, 'weight the loss by step (SNR '
                   'differences)'),
    HyperParameter('sampling_steps', int, 'noise steps before inference'),
    HyperParameter('sampling_noise', bool, 'sample in the reverse pass'),
    HyperParameter('history_length', int, 'losses kept per step for '
                   'importance sampling'),
)


class DiffRecRecipe(Recipe):
    r"""Trains :class:`~diffkg_pyg.DiffRec` as its authors' ``main.py``
    does: every epoch is one pass over all users in random order,
    :obj:`batch_size` users per step, each step on :meth:`DiffRec.loss` of
    the users' train rows, with :class:`torch.optim.AdamW` (the learning
    rate and weight decay of the training settings). Evaluation scores a
    user by :meth:`DiffRec.recommend` of their train row (a generator
    seeded with the run's seed per evaluation draws any inference noise,
    so that validation does not move the training's random stream).

    The model needs only the user-item interactions: it trains on DiffRec's
    datasets and on the user-item part of the knowledge-graph datasets.
    """
    name = 'diffrec'
    description = ('DiffRec: diffusion over interaction rows (Wang et al., '
                   'SIGIR 2023)')
    model_class = DiffRec
    presets = DIFFREC_PRESETS
    hyperparameters = from_signature(DiffRec, *_DIFFREC_PARAMETERS)

    def build_model(self, sizes: Sizes) -> DiffRec:
        self.num_users = sizes.num_users
        self.seed = 0  # Of inference noise; the run's seed in training.
        return self.model_class(sizes.num_items, **self.hparams)

    def setup(self, model: DiffRec, trainer, data) -> None:
        self.seed = trainer.settings['seed']
        self.setup_inference(model, trainer.train_edge_index, {})

    def setup_inference(self, model: DiffRec, train_edge_index: Tensor,
                        inputs: Dict[str, Tensor]) -> None:
        self.ptr, self.col = to_csr(train_edge_index, self.num_users)
        self.weight = model.input_weights(self.ptr)

    def configure_optimizers(self, model: DiffRec,
                             trainer) -> List[torch.optim.Optimizer]:
        return [torch.optim.AdamW(model.parameters(), lr=trainer.lr,
                                  weight_decay=trainer.weight_decay)]

    def train_epoch(self, model: DiffRec, trainer,
                    epoch: int) -> Dict[str, Any]:
        perm = torch.randperm(self.num_users, generator=trainer.generator,
                              device=trainer.device)
        for users in trainer.progress(trainer.batches(perm),
                                      f'epoch {epoch}'):
            x = model.rows(self.ptr, self.col, users, self.weight)
            loss, mse = model.loss(x, trainer.generator)
            trainer.step(trainer.optimizers, loss, mse=mse)
        return {}

    def scores(self, model: DiffRec) -> Callable[[Tensor], Tensor]:
        device = self.col.device
        generator = torch.Generator(device).manual_seed(self.seed)
        return lambda users: model.recommend(
            model.rows(self.ptr, self.col, users.to(device), self.weight),
            generator)


class TDiffRecRecipe(DiffRecRecipe):
    r"""Trains :class:`~diffkg_pyg.TDiffRec` as :class:`DiffRecRecipe`
    trains DiffRec. It needs the chronological order of every user's train
    interactions (``edge_time``, in DiffRec's dataset layout)."""
    name = 'tdiffrec'
    description = ('T-DiffRec: DiffRec with time-aware interaction weights '
                   '(Wang et al., SIGIR 2023)')
    model_class = TDiffRec
    hyperparameters = from_signature(
        TDiffRec,
        HyperParameter('w_min', float, 'weight of the oldest interaction'),
        HyperParameter('w_max', float, 'weight of the newest interaction'),
    ) + from_signature(DiffRec, *_DIFFREC_PARAMETERS)

    def setup(self, model: TDiffRec, trainer, data) -> None:
        if 'edge_time' not in data[USER_ITEM]:
            raise ValueError('tdiffrec needs the chronological order of the '
                             'train interactions, which only datasets in '
                             "DiffRec's layout (train_list.npy) have")
        super().setup(model, trainer, data)
