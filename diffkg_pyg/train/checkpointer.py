r"""The training checkpoints of a run: what one holds, when one is written,
and how a run continues from one exactly (a checkpoint of other data or
other hyper-parameters is refused, naming the difference)."""
import math
import os.path as osp
from typing import Any, Dict, List, Optional

import torch

from diffkg_pyg import distributed
from diffkg_pyg.train.checkpoint import (
    lift_graph_state,
    load_checkpoint,
    rng_state,
    save_atomic,
    set_rng_state,
)
from diffkg_pyg.train.persistence import check_model_state
from diffkg_pyg.train.recipe import Recipe, Sizes
from diffkg_pyg.train.results import FitState
from diffkg_pyg.utils import first_line, iter_tensors, to_device

__all__ = ['Checkpointer', 'CHECKPOINT_FORMAT']

CHECKPOINT_FORMAT = 'diffkg_pyg.Trainer/2'


class Checkpointer:
    r"""Writes and reads the checkpoints of one run.

    A checkpoint holds the parameters, the optimisers, the recipe's state,
    every random generator's state (of every process), the early-stopping
    state and history, the hyper-parameters, the settings and a fingerprint
    of the data. :obj:`last.pt` is written every :obj:`every` epochs (and
    when the run stops), :obj:`best.pt` at every new best epoch, both
    atomically, by the first process only.

    Args:
        model (torch.nn.Module): The model.
        recipe (Recipe): Its recipe (hyper-parameters and state).
        optimizers (list): The optimisers.
        generator (torch.Generator): The run's generator.
        settings (dict): The training settings that a resumed run must
            share (learning rate, batch size, seed, ...).
        fingerprint (str): The data's fingerprint
            (:func:`~diffkg_pyg.train.checkpoint.fingerprint`).
        directory (str, optional): Where the files go. (default:
            :obj:`None`: none are written but on an interruption, in the
            working folder)
        every (int, optional): Epochs between :obj:`last.pt` writes.
            (default: :obj:`1`)
        sizes (Sizes, optional): The dataset's sizes, against which a
            loaded checkpoint's indices are checked. (default: those of
            the model's data, where the trainer gives them)
    """
    def __init__(self, model: torch.nn.Module, recipe: Recipe,
                 optimizers: List[torch.optim.Optimizer],
                 generator: torch.Generator, settings: Dict[str, Any],
                 fingerprint: str, directory: Optional[str] = None,
                 every: int = 1, sizes: Optional[Sizes] = None) -> None:
        self.model = model
        self.recipe = recipe
        self.optimizers = optimizers
        self.generator = generator
        self.settings = settings
        self.fingerprint = fingerprint
        self.directory = directory
        self.every = every
        #: The dataset's sizes (the bounds of a loaded state's indices).
        self.sizes = sizes
        self.rank = distributed.get_rank()
        self.world_size = distributed.get_world_size()

    @property
    def device(self) -> torch.device:
        return self.generator.device

    def snapshot(self) -> Dict[str, Any]:
        r"""The model's and the recipe's state, copied to the CPU (the best
        epoch's state would otherwise hold a second copy of every parameter
        in the device's memory)."""
        return to_device({'model': self.model.state_dict(),
                          'recipe': self.recipe.state_dict()},
                         torch.device('cpu'), copy=True)

    def restore(self, snapshot: Dict[str, Any]) -> None:
        r"""Loads a :meth:`snapshot` back."""
        self.model.load_state_dict(snapshot['model'])
        self.recipe.load_state_dict(to_device(snapshot['recipe'],
                                              self.device))

    def compared(self) -> Dict[str, Any]:
        r"""The hyper-parameters and settings a resumed checkpoint must
        agree on (those declared :obj:`compared`)."""
        skip = {p.name for p in self.recipe.hyperparameters if not p.compared}
        values = {k: v for k, v in self.recipe.hparams.items()
                  if k not in skip}
        return {**values, **self.settings}

    def state(self, fit_state: FitState) -> Dict[str, Any]:
        r"""Everything needed to continue exactly after :obj:`fit_state`
        (a collective: every process gathers its random states)."""
        best = fit_state.best_state
        if fit_state.best_epoch == fit_state.epoch:
            best = None  # The current state; not stored twice.
        return {
            'format': CHECKPOINT_FORMAT,
            'model_name': self.recipe.name,
            'hyperparameters': self.recipe.hparams,
            'settings': self.settings,
            'fingerprint': self.fingerprint,
            'model': self.model.state_dict(),
            'recipe': self.recipe.state_dict(),
            'optimizers': [o.state_dict() for o in self.optimizers],
            'rng': rng_state(self.generator),
            # Every process's generators (all equal by design: one seed).
            'rng_ranks': distributed.all_gather_objects(
                rng_state(self.generator)),
            'world_size': self.world_size,
            'fit_state': {**fit_state.__dict__, 'best_state': best},
        }

    def load(self, path: str) -> FitState:
        r"""Restores a checkpoint of this model, data and settings
        (anything else raises :class:`ValueError` naming the difference);
        returns the state to continue from."""
        # Loaded on the CPU: the generator states must stay CPU tensors;
        # the parameters and optimiser states are copied to their device.
        saved = load_checkpoint(path, torch.device('cpu'))
        try:
            return self._load(path, saved)
        except (RuntimeError, KeyError, TypeError, IndexError,
                AttributeError) as error:
            # What a consistent file cannot raise: edited or truncated.
            raise ValueError(f'{path}: the checkpoint does not load '
                             f'({type(error).__name__}: '
                             f'{first_line(error)}); it is damaged or of '
                             f'other code: train again, or resume from '
                             f'another checkpoint') from None

    def _load(self, path: str, saved: Dict[str, Any]) -> FitState:
        if saved.get('format') == 'diffkg_pyg.Trainer/1':
            raise ValueError(f'{path}: a checkpoint of diffkg_pyg 0.2, whose '
                             f'format this version no longer reads; train '
                             f'again from the start')
        if saved.get('format') != CHECKPOINT_FORMAT:
            raise ValueError(f'{path}: not a training checkpoint of this '
                             f'package (format {saved.get("format")!r})')
        if saved['model_name'] != self.recipe.name:
            raise ValueError(f'{path}: the checkpoint is of model '
                             f'{saved["model_name"]!r}, not '
                             f'{self.recipe.name!r}')
        if saved['fingerprint'] != self.fingerprint:
            raise ValueError(f'{path}: the checkpoint was written for other '
                             f'data (dataset fingerprint '
                             f'{saved["fingerprint"][:12]}..., this data '
                             f'{self.fingerprint[:12]}...)')
        mine = self.compared()
        # Checkpoints older than the `eval_every` setting validated every
        # epoch:
        theirs = {'eval_every': 1, **saved['hyperparameters'],
                  **saved['settings']}
        differ = [f'{k}={theirs.get(k)!r} (given {mine.get(k)!r})'
                  for k in sorted(mine) if mine.get(k) != theirs.get(k)]
        if differ:
            raise ValueError(f'{path}: the checkpoint has other '
                             f'hyper-parameters: {", ".join(differ)}')
        ranks = saved.get('rng_ranks', [saved['rng']])
        if len(ranks) != self.world_size:
            raise ValueError(f'{path}: the checkpoint was written by '
                             f'{len(ranks)} process(es); resume it with as '
                             f'many (this run has {self.world_size})')
        missing = [k for k in ('model', 'recipe', 'optimizers', 'rng',
                               'fit_state') if k not in saved]
        if missing:
            raise ValueError(f'{path}: the checkpoint has no '
                             f'{", ".join(missing)} (damaged or edited); '
                             f'resume from another checkpoint')
        saved['model'], saved['recipe'] = lift_graph_state(saved['model'],
                                                           saved['recipe'])
        best = saved['fit_state'].get('best_state')
        if isinstance(best, dict) and 'model' in best:
            best['model'], best['recipe'] = lift_graph_state(
                best['model'], best.get('recipe'))
        if self.sizes is not None:
            check_model_state(saved['model'], saved['recipe'], self.sizes,
                              path)
        if len(saved['optimizers']) != len(self.optimizers):
            raise ValueError(f'{path}: the checkpoint has '
                             f'{len(saved["optimizers"])} optimiser states '
                             f'for {len(self.optimizers)} optimisers')
        for optimizer, optimizer_state in zip(self.optimizers,
                                              saved['optimizers']):
            _check_optimizer_state(optimizer, optimizer_state, path)
        self.model.load_state_dict(saved['model'])
        self.recipe.load_state_dict(to_device(saved['recipe'], self.device))
        for optimizer, optimizer_state in zip(self.optimizers,
                                              saved['optimizers']):
            optimizer.load_state_dict(optimizer_state)
        set_rng_state(ranks[self.rank], self.generator)
        state = _fit_state(saved['fit_state'], path)
        if state.best_state is None:
            state.best_state = self.snapshot()
        return state

    def save(self, fit_state: FitState, name: str) -> str:
        r"""Writes the checkpoint of :obj:`fit_state` as :obj:`name` in the
        folder (a collective; the first process writes); returns its
        path."""
        path = osp.join(self.directory or '.', name)
        checkpoint = self.state(fit_state)
        if self.rank == 0:
            save_atomic(checkpoint, path)
        return path

    def size_estimate(self) -> int:
        r"""About the bytes of one checkpoint: the parameters and the
        optimisers' states (Adam keeps two per parameter), the recipe's
        state and the best epoch's copy."""
        def nbytes(obj) -> int:
            return sum(t.numel() * t.element_size()
                       for _, t in iter_tensors(obj))
        parameters = nbytes(self.model.state_dict())
        return 4 * parameters + 2 * nbytes(self.recipe.state_dict())

    def on_epoch_end(self, fit_state: FitState, epochs: int,
                     interrupted: bool,
                     fallback: bool = True) -> Optional[str]:
        r"""Writes the checkpoints due after an epoch: :obj:`best.pt` at a
        new best epoch, :obj:`last.pt` every :obj:`every` epochs, when the
        run stops and on an interruption (then, without a folder,
        :obj:`diffkg-interrupted.pt` in the working folder, unless
        :obj:`fallback` is :obj:`False`). Returns the
        path of the last state written, if any."""
        path = None
        if self.directory is not None:
            if fit_state.best_epoch == fit_state.epoch:
                self.save(fit_state, 'best.pt')
            if (fit_state.epoch % self.every == 0 or fit_state.stopped
                    or fit_state.epoch == epochs or interrupted):
                path = self.save(fit_state, 'last.pt')
        if interrupted and path is None and fallback:
            path = self.save(fit_state, 'diffkg-interrupted.pt')
        return path


def _fit_state(values: Any, path: str) -> FitState:
    r"""The early-stopping state of a checkpoint, its fields checked."""
    kinds = {'epoch': int, 'best_value': (int, float), 'best_epoch': int,
             'best_valid': dict, 'history': list, 'stopped': bool,
             'seconds': (int, float)}
    if not isinstance(values, dict) or not set(kinds) <= set(values):
        raise ValueError(f'{path}: the checkpoint has no complete fit state '
                         f'(damaged or edited)')
    for key, kind in kinds.items():
        value = values[key]
        if not isinstance(value, kind) or (kind is int and (
                isinstance(value, bool) or value < 0)):
            raise ValueError(f'{path}: the fit state\'s {key} is '
                             f'{value!r} (damaged or edited)')
    return FitState(**values)


def _check_optimizer_state(optimizer: torch.optim.Optimizer, state: Any,
                           path: str) -> None:
    r"""An optimiser's saved state against the optimiser: as many
    parameters, every moment tensor finite and of its parameter's shape,
    every step count a non-negative number."""
    if not isinstance(state, dict) or 'state' not in state or \
            'param_groups' not in state:
        raise ValueError(f'{path}: an optimiser state is damaged')
    ids = [i for group in state['param_groups'] for i in group['params']]
    params = [p for group in optimizer.param_groups for p in group['params']]
    if len(ids) != len(params):
        raise ValueError(f'{path}: an optimiser state has {len(ids)} '
                         f'parameters for {len(params)}')
    shapes = dict(zip(ids, (p.shape for p in params)))
    for key, values in state['state'].items():
        for name, value in values.items():
            where = f'{path}: optimiser state {name} of parameter {key}'
            number = float(value) if not isinstance(value, torch.Tensor) \
                or value.numel() == 1 else None
            if name == 'step' and (number is None or not (
                    math.isfinite(number) and number >= 0)):
                raise ValueError(f'{where} is {value!r} (damaged)')
            if isinstance(value, torch.Tensor):
                if value.is_floating_point() and \
                        not bool(torch.isfinite(value).all()):
                    raise ValueError(f'{where} holds NaN or infinite values')
                if value.dim() and value.shape != shapes.get(key):
                    raise ValueError(f'{where} has shape '
                                     f'{list(value.shape)}, not its '
                                     f'parameter\'s')
