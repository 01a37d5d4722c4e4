r"""The one training loop of the package: every model, through its
:class:`~diffkg_pyg.train.Recipe`, under one protocol (BPR-style epochs,
validation after every epoch, early stopping on validation Recall@20, the
best epoch restored, then one test evaluation; the test set is never used
for selection), with checkpoints, exact resume and clean interruption."""
import math
import os.path as osp
import signal
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from diffkg_pyg import distributed
from diffkg_pyg.data.graph import USER_ITEM
from diffkg_pyg.evaluation import RankingEvaluator
from diffkg_pyg.train.checkpoint import (
    fingerprint,
    load_checkpoint,
    rng_state,
    save_atomic,
    set_rng_state,
)
from diffkg_pyg.train.persistence import save_model
from diffkg_pyg.train.recipe import Recipe, Sizes
from diffkg_pyg.train.results import (
    FitResult,
    FitState,
    NonFiniteLossError,
    TrainingInterrupted,
)
from diffkg_pyg.train.sampling import sample_negative_items
from diffkg_pyg.utils import peak_rss_mb

__all__ = ['Trainer', 'FitResult', 'FitState', 'TrainingInterrupted',
           'NonFiniteLossError']

CHECKPOINT_FORMAT = 'diffkg_pyg.Trainer/1'


def _format(value) -> str:
    if isinstance(value, int):
        return str(value)
    return f'{value:.4f}' if abs(value) >= 1e-3 or value == 0 else \
        f'{value:.3e}'


def _check(condition: bool, name: str, value, allowed: str) -> None:
    if not condition:
        raise ValueError(f"'{name}' must be {allowed} (got {value!r})")


def _to(obj: Any, device: torch.device, copy: bool = False) -> Any:
    if isinstance(obj, Tensor):
        return obj.detach().to(device, copy=copy)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(v, device, copy) for v in obj)
    if isinstance(obj, dict):
        return {k: _to(v, device, copy) for k, v in obj.items()}
    return obj


class Trainer:
    r"""Trains and evaluates the model of a :class:`Recipe` on a dataset
    graph (see :func:`~diffkg_pyg.data.build_hetero_data`) under the
    package's protocol.

    The model is built by the recipe after :obj:`torch.manual_seed(seed)`;
    every sampling step draws from :attr:`generator` (seeded with
    :obj:`seed`), so a run is reproducible on CPU and its checkpoints resume
    exactly.

    Every epoch, :meth:`Recipe.train_epoch` runs in training mode; each of
    its optimiser steps goes through :meth:`step`, which records the loss
    terms on the device (no host sync per step). After the epoch the
    terms' means are checked: a NaN or infinite one stops training with
    :class:`NonFiniteLossError` naming the term and the epoch, before any
    checkpoint of that epoch is written. Then the model is evaluated on
    validation; the best epoch's state (parameters and the recipe's state)
    is kept, training stops after :obj:`patience` epochs without a better
    validation :obj:`metric`, the best state is restored and tested.

    With :obj:`checkpoint_dir`, :obj:`last.pt` is written every
    :obj:`checkpoint_every` epochs (and after the last one) and
    :obj:`best.pt` at every new best epoch, atomically. A checkpoint holds
    the parameters, the optimisers, the recipe's state, every random
    generator's state, the early-stopping state and history, the
    hyper-parameters, the settings and a fingerprint of the data;
    :meth:`fit` with :obj:`resume` continues from one exactly (a checkpoint
    of other data or other hyper-parameters is refused, naming the
    difference). A first Ctrl-C (SIGINT) lets the epoch finish, writes a
    checkpoint and raises :class:`TrainingInterrupted`; a second stops at
    once.

    **Several processes.** In a process group of :math:`P > 1` processes
    (:obj:`torchrun`, see :func:`~diffkg_pyg.distributed.
    init_from_env`), every rank builds the same model and draws the same
    random numbers; the steps a recipe shards through :meth:`shard` (the
    recommendation steps of DiffKG and LightGCN) give every rank its part of
    the global batch of :obj:`batch_size` and sum the weighted gradients
    over the ranks (:mod:`~diffkg_pyg.distributed`), so that the run
    optimises the one-process objective step for step; the other steps run
    in full on every rank. Validation and test rank each rank's share of
    the users and sum the metrics over the ranks; early stopping reads the
    summed metric, the same on every rank. Rank 0 alone logs, shows
    progress and writes checkpoints (with every rank's random states);
    every rank resumes from the same file. :obj:`batch_size` must be a
    multiple of :math:`P`.

    Args:
        recipe (Recipe): The model's recipe (its hyper-parameters set).
        data (HeteroData): The dataset graph.
        lr (float, optional): Learning rate. (default: :obj:`1e-3`)
        batch_size (int, optional): Training examples per step.
            (default: :obj:`1024`)
        weight_decay (float, optional): Weight decay of the default
            optimiser. (default: :obj:`0.0`)
        seed (int, optional): Seed of initialisation and sampling.
            (default: :obj:`0`)
        max_batches (int, optional): Cap on the steps per epoch pass (smoke
            runs). (default: :obj:`None`)
        eval_every (int, optional): Validate every this many epochs (and
            after the epoch cap); early stopping and the best epoch are
            decided at validated epochs, patience still counts epochs.
            (default: :obj:`1`)
        ks (list of int, optional): Metric cut-offs.
            (default: :obj:`(10, 20, 40)`)
        eval_batch_size (int, optional): Users scored at once.
            (default: :obj:`1024`)
        device (torch.device, optional): Where to train. (default: CPU)
        checkpoint_dir (str, optional): Where :obj:`last.pt` and
            :obj:`best.pt` go. (default: :obj:`None`: no checkpoints)
        checkpoint_every (int, optional): Epochs between :obj:`last.pt`
            writes. (default: :obj:`1`)
        metric (str, optional): The validation metric to select on.
            (default: :obj:`'recall@20'`)
        log (callable, optional): Receives one line per epoch.
            (default: :func:`tqdm.write`)
    """
    def __init__(
        self,
        recipe: Recipe,
        data: HeteroData,
        lr: float = 1e-3,
        batch_size: int = 1024,
        weight_decay: float = 0.0,
        seed: int = 0,
        max_batches: Optional[int] = None,
        eval_every: int = 1,
        ks: Sequence[int] = (10, 20, 40),
        eval_batch_size: int = 1024,
        device: Optional[torch.device] = None,
        checkpoint_dir: Optional[str] = None,
        checkpoint_every: int = 1,
        metric: str = 'recall@20',
        log: Optional[Callable[[str], None]] = None,
    ) -> None:
        _check(lr > 0, 'lr', lr, '> 0')
        _check(weight_decay >= 0, 'weight_decay', weight_decay, '>= 0')
        _check(batch_size >= 1, 'batch_size', batch_size, '>= 1')
        _check(max_batches is None or max_batches >= 1, 'max_batches',
               max_batches, '>= 1')
        _check(checkpoint_every >= 1, 'checkpoint_every', checkpoint_every,
               '>= 1')
        _check(eval_every >= 1, 'eval_every', eval_every, '>= 1')
        self.rank = distributed.get_rank()
        self.world_size = distributed.get_world_size()
        if batch_size % self.world_size != 0:
            raise ValueError(f'batch_size {batch_size} is not a multiple of '
                             f'the {self.world_size} processes (the global '
                             f'batch is split evenly among them)')
        self.recipe = recipe
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.max_batches = max_batches
        self.metric = metric
        self.device = torch.device(device or 'cpu')
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.log = (log or tqdm.write) if self.rank == 0 else \
            (lambda line: None)
        self.settings = {'lr': lr, 'batch_size': batch_size,
                         'weight_decay': weight_decay, 'seed': seed,
                         'max_batches': max_batches, 'eval_every': eval_every}
        self.eval_every = eval_every
        self.eval_batch_size = eval_batch_size
        self._fit_settings: Dict[str, Any] = {}
        self.sizes = Sizes.from_data(data)
        self.fingerprint = fingerprint(data)

        store = data[USER_ITEM]
        if store.val_edge_index.size(1) == 0:
            raise ValueError('the dataset has no validation interactions: '
                             'early stopping needs val_ratio > 0')
        num_users, num_items = self.sizes.num_users, self.sizes.num_items
        train, val = store.edge_index, store.val_edge_index
        self.valid_evaluator = RankingEvaluator(val, [train], num_users,
                                                num_items, ks,
                                                eval_batch_size)
        self.test_evaluator = RankingEvaluator(store.test_edge_index,
                                               [train, val], num_users,
                                               num_items, ks,
                                               eval_batch_size)

        recipe.prepare(data, seed)
        torch.manual_seed(seed)
        self.model = recipe.build_model(self.sizes).to(self.device)
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.train_edge_index = train.to(self.device)
        distributed.broadcast_module(self.model)
        recipe.setup(self.model, self, data)
        self.optimizers = recipe.configure_optimizers(self.model, self)
        self._share: Optional[float] = None
        self._sums: Dict[str, Tensor] = {}
        self._counts: Dict[str, int] = {}
        self._totals: List[str] = []
        self._interrupted = False
        self._on_validation: Optional[Callable] = None

    @classmethod
    def from_settings(cls, recipe: Recipe, data: HeteroData,
                      settings: Dict[str, Any], **kwargs) -> 'Trainer':
        r"""A trainer with the training settings :obj:`settings` (every
        :data:`~diffkg_pyg.train.TRAIN_SETTINGS` name; :obj:`epochs` and
        :obj:`patience` are for :meth:`fit`); :obj:`kwargs` go to the
        constructor."""
        return cls(recipe, data, lr=settings['lr'],
                   batch_size=settings['batch_size'],
                   weight_decay=settings['weight_decay'],
                   seed=settings['seed'],
                   max_batches=settings['max_batches'],
                   eval_batch_size=settings['eval_batch_size'],
                   eval_every=settings['eval_every'], **kwargs)

    # The helpers of Recipe.train_epoch ####################################

    def batches(self, index: Tensor) -> List[Tensor]:
        r"""Splits :obj:`index` into batches of :obj:`batch_size` (at most
        :obj:`max_batches` of them)."""
        return list(torch.split(index, self.batch_size))[:self.max_batches]

    def progress(self, iterable: Iterable, desc: str) -> Iterable:
        r"""A progress bar over :obj:`iterable` (hidden when the output is
        not a terminal)."""
        return tqdm(iterable, desc=desc, leave=False,
                    disable=None if self.rank == 0 else True)

    def shard(self, index: Tensor) -> Tensor:
        r"""This process's part of the global batch :obj:`index` (all of it
        in one process). The next :meth:`step` weights its loss by the
        part's share of the batch and sums the gradients over the processes
        (see :mod:`~diffkg_pyg.distributed`): its loss must be a mean
        over the part plus terms that do not depend on the batch, or be
        divided by :attr:`shard_batch_size` where the model divides a sum by
        the nominal batch size."""
        part, self._share = distributed.shard(index)
        return part

    @property
    def shard_batch_size(self) -> float:
        r"""The nominal batch size that this process's part of the current
        step stands for: :obj:`batch_size` times its share of the batch
        (:obj:`batch_size` in one process), the divisor of a loss that
        divides a sum over the batch by the nominal batch size."""
        if self._share is None or self.world_size == 1:
            return self.batch_size
        return self.batch_size * self._share

    def bpr_batches(self, desc: str = 'train'):
        r"""One pass over the train interactions in random order, in
        batches of :obj:`(user, positive_item, negative_item)`: one negative
        item per interaction, drawn uniformly among the user's non-train
        items (see :func:`sample_negative_items`)."""
        user, positive = self.train_edge_index
        negative = sample_negative_items(user, self.train_edge_index,
                                         self.sizes.num_items,
                                         self.generator)
        perm = torch.randperm(user.numel(), generator=self.generator,
                              device=self.device)
        for batch in self.progress(self.batches(perm), desc):
            batch = self.shard(batch)
            yield user[batch], positive[batch], negative[batch]

    def step(self, optimizers: Sequence[torch.optim.Optimizer],
             loss: Tensor, name: str = 'loss', **terms: Tensor) -> None:
        r"""One optimiser step on :obj:`loss`: zeroes the gradients of
        :obj:`optimizers`, back-propagates and steps them, and records the
        loss (under :obj:`name`) and its detached :obj:`terms`, whose means
        over the epoch are logged and checked for NaN and infinity.

        After :meth:`shard`, with several processes, the loss is weighted by
        the part's share of the batch and the gradients of the optimisers'
        parameters are summed over the processes before the optimisers
        step."""
        share, self._share = self._share, None
        sharded = share is not None and self.world_size > 1
        for optimizer in optimizers:
            optimizer.zero_grad()
        if not sharded:
            loss.backward()
        elif share > 0:
            (loss * share).backward()
        # else: an empty part (a last batch shorter than the processes):
        # no gradient (its loss, a mean over nothing, is NaN).
        if sharded:
            distributed.all_reduce_gradients(
                [p for o in optimizers for group in o.param_groups
                 for p in group['params']])
        for optimizer in optimizers:
            optimizer.step()
        if name not in self._totals:
            self._totals.append(name)
        # Summed over the processes at the end of the epoch: a sharded
        # step's terms by their share, the others (the same on every
        # process) by 1 / P.
        weight = share if sharded else 1.0 / self.world_size
        for key, value in {name: loss, **terms}.items():
            value = value.detach().float()
            if self.world_size > 1:
                value = value * weight if weight > 0 else \
                    torch.zeros_like(value)
            if key in self._sums:
                self._sums[key] = self._sums[key] + value
                self._counts[key] += 1
            else:
                self._sums[key], self._counts[key] = value, 1

    def _epoch_terms(self, epoch: int) -> Dict[str, float]:
        if not self._sums:
            return {}
        names = list(self._sums)
        means = torch.stack([self._sums[k] / self._counts[k] for k in names])
        distributed.all_reduce_sum(means)
        means = dict(zip(names, means.tolist()))  # One host sync per epoch.
        self._sums, self._counts = {}, {}
        # The terms name the culprit better than the totals: check them
        # first.
        for key in sorted(names, key=lambda k: k in self._totals):
            if not math.isfinite(means[key]):
                raise NonFiniteLossError(
                    f'the {key} loss is {means[key]} in epoch {epoch}; '
                    f'training stopped (checkpoints of earlier epochs are '
                    f'kept; try a lower learning rate)')
        return means

    # The loop #############################################################

    def evaluate(self, evaluator: RankingEvaluator) -> Dict[str, float]:
        r"""Evaluates the model (in evaluation mode) with
        :obj:`evaluator`."""
        self.model.eval()
        with torch.no_grad():
            scores = self.recipe.scores(self.model)
        return evaluator(scores, sharded=self.world_size > 1)

    def _snapshot(self) -> Dict[str, Any]:
        # The best epoch's state, copied to the CPU: it would otherwise hold
        # a second copy of every parameter (DiffKG: the 2 x N x 1000
        # denoiser tables) in the device's memory.
        return _to({'model': self.model.state_dict(),
                    'recipe': self.recipe.state_dict()},
                   torch.device('cpu'), copy=True)

    def _restore(self, snapshot: Dict[str, Any]) -> None:
        self.model.load_state_dict(snapshot['model'])
        self.recipe.load_state_dict(_to(snapshot['recipe'], self.device))

    def train_epoch(self, epoch: int) -> Dict[str, Any]:
        r"""Runs one training epoch; returns its record (loss-term means
        and what the recipe logs)."""
        self.model.train()
        self._sums, self._counts = {}, {}
        extra = self.recipe.train_epoch(self.model, self, epoch)
        return {**self._epoch_terms(epoch), **extra}

    def fit(self, epochs: int, patience: int = 10,
            resume: Optional[str] = None, test: bool = True,
            on_validation: Optional[Callable[[int, Dict[str, float]],
                                             None]] = None) -> FitResult:
        r"""Trains with early stopping, from scratch or from the checkpoint
        :obj:`resume`, up to :obj:`epochs` epochs in total, then tests the
        best epoch.

        Args:
            epochs (int): The epoch cap (in total, when resuming).
            patience (int, optional): Epochs without a better validation
                metric before stopping. (default: :obj:`10`)
            resume (str, optional): A checkpoint to continue from.
                (default: :obj:`None`)
            test (bool, optional): Whether to evaluate the best epoch on
                the test interactions; without, :obj:`FitResult.test` is
                empty and the test set is never read (hyper-parameter
                search). (default: :obj:`True`)
            on_validation (callable, optional): Called after every
                validation with the epoch and its validation metrics (e.g.
                to report them to a pruner, which may stop the fit by
                raising). (default: :obj:`None`)
        """
        _check(epochs >= 1, 'epochs', epochs, '>= 1')
        _check(patience >= 1, 'patience', patience, '>= 1')
        self._fit_settings = {'epochs': epochs, 'patience': patience}
        self._on_validation = on_validation
        state = self.load_checkpoint(resume) if resume else FitState()
        handler = None
        if threading.current_thread() is threading.main_thread():
            handler = signal.signal(signal.SIGINT, self._interrupt)
        try:
            start = time.perf_counter() - state.seconds
            for epoch in range(state.epoch + 1, epochs + 1):
                if state.stopped:
                    break
                self._run_epoch(state, epoch, patience, start,
                                epoch % self.eval_every == 0 or
                                epoch == epochs)
                self._on_epoch_end(state, epochs)
                if state.stopped:
                    self.log(f'early stop: no better valid {self.metric} '
                             f'for {patience} epochs')
        finally:
            if handler is not None:
                signal.signal(signal.SIGINT, handler)
            self._interrupted = False
        if state.best_state is None:
            raise ValueError(f'nothing to test: the state has no epoch '
                             f'(epochs = {epochs}, epochs already run = '
                             f'{state.epoch})')
        self._restore(state.best_state)
        test_metrics = self.evaluate(self.test_evaluator) if test else {}
        phases = {}
        for record in state.history:
            for key, value in record.items():
                if key.endswith('_seconds'):
                    phase = key[:-len('_seconds')]
                    phases[phase] = phases.get(phase, 0.0) + value
        return FitResult(state.epoch, state.best_epoch,
                         time.perf_counter() - start, state.best_valid,
                         test_metrics,
                         state.history,
                         {**self.recipe.summary(), 'phase_seconds': phases})

    def _run_epoch(self, state: FitState, epoch: int, patience: int,
                   start: float, validate: bool = True) -> None:
        epoch_start = time.perf_counter()
        record = {'epoch': epoch, **self.train_epoch(epoch)}
        record['train_seconds'] = time.perf_counter() - epoch_start
        if not validate:
            state.history.append(record)
            state.epoch = epoch
            self.log(' | '.join([f'epoch {epoch:3d}'] + [
                f'{k} {_format(v)}' for k, v in record.items()
                if k != 'epoch']))
            # Never before the first validation (patience < eval_every):
            state.stopped = (state.best_state is not None and
                             epoch - state.best_epoch >= patience)
            state.seconds = time.perf_counter() - start
            return
        eval_start = time.perf_counter()
        valid = self.evaluate(self.valid_evaluator)
        record['eval_seconds'] = time.perf_counter() - eval_start
        if self.metric not in valid:
            raise ValueError(f"unknown validation metric '{self.metric}' "
                             f"(available: {sorted(valid)})")
        record.update({f'valid_{k}': v for k, v in valid.items()})
        state.history.append(record)
        state.epoch = epoch
        improved = valid[self.metric] > state.best_value
        if improved:
            state.best_value, state.best_epoch = valid[self.metric], epoch
            state.best_valid = valid
            state.best_state = self._snapshot()
        self.log(' | '.join(
            [f'epoch {epoch:3d}'] +
            [f'{k} {_format(v)}' for k, v in record.items()
             if k != 'epoch' and not k.startswith('valid_')] +
            [f'valid recall@20 {valid.get("recall@20", float("nan")):.4f}',
             f'ndcg@20 {valid.get("ndcg@20", float("nan")):.4f}'] +
            (['best'] if improved else [])))
        state.stopped = epoch - state.best_epoch >= patience
        state.seconds = time.perf_counter() - start
        if self._on_validation is not None:
            self._on_validation(epoch, valid)

    # Checkpoints ##########################################################

    def _compared(self) -> Dict[str, Any]:
        skip = {p.name for p in self.recipe.hyperparameters if not p.compared}
        values = {k: v for k, v in self.recipe.hparams.items()
                  if k not in skip}
        return {**values, **self.settings}

    def checkpoint(self, state: FitState) -> Dict[str, Any]:
        r"""Everything needed to continue exactly after :obj:`state`."""
        best = state.best_state
        if state.best_epoch == state.epoch:
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
            'fit_state': {**state.__dict__, 'best_state': best},
        }

    def load_checkpoint(self, path: str) -> FitState:
        r"""Restores a checkpoint of this model, data and settings
        (anything else raises :class:`ValueError` naming the difference);
        returns the state to continue from."""
        # Loaded on the CPU: the generator states must stay CPU tensors;
        # the parameters and optimiser states are copied to their device.
        saved = load_checkpoint(path, torch.device('cpu'))
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
        mine = self._compared()
        # Checkpoints older than the `eval_every` setting validated every
        # epoch:
        theirs = {'eval_every': 1, **saved['hyperparameters'],
                  **saved['settings']}
        differ = [f'{k}={theirs.get(k)!r} (given {mine.get(k)!r})'
                  for k in sorted(mine) if mine.get(k) != theirs.get(k)]
        if differ:
            raise ValueError(f'{path}: the checkpoint has other '
                             f'hyper-parameters: {", ".join(differ)}')
        self.model.load_state_dict(saved['model'])
        self.recipe.load_state_dict(_to(saved['recipe'], self.device))
        for optimizer, optimizer_state in zip(self.optimizers,
                                              saved['optimizers']):
            optimizer.load_state_dict(optimizer_state)
        ranks = saved.get('rng_ranks', [saved['rng']])
        if len(ranks) != self.world_size:
            raise ValueError(f'{path}: the checkpoint was written by '
                             f'{len(ranks)} process(es); resume it with as '
                             f'many (this run has {self.world_size})')
        set_rng_state(ranks[self.rank], self.generator)
        state = FitState(**saved['fit_state'])
        if state.best_state is None:
            state.best_state = self._snapshot()
        return state

    def _save(self, state: FitState, name: str) -> str:
        # Every process gathers its random states; rank 0 writes.
        path = osp.join(self.checkpoint_dir or '.', name)
        checkpoint = self.checkpoint(state)
        if self.rank == 0:
            save_atomic(checkpoint, path)
        return path

    def _on_epoch_end(self, state: FitState, epochs: int) -> None:
        path = None
        if self.world_size > 1:  # A Ctrl-C on any process stops them all.
            flag = torch.tensor([float(self._interrupted)],
                                device=self.device)
            self._interrupted = bool(distributed.all_reduce_sum(flag) > 0)
        if self.checkpoint_dir is not None:
            if state.best_epoch == state.epoch:
                self._save(state, 'best.pt')
            if (state.epoch % self.checkpoint_every == 0 or state.stopped
                    or state.epoch == epochs or self._interrupted):
                path = self._save(state, 'last.pt')
        if self._interrupted:
            path = path or self._save(state, 'diffkg-interrupted.pt')
            raise TrainingInterrupted(
                f'interrupted after epoch {state.epoch}: checkpoint saved '
                f'to {path}; continue with --resume {path}', path)

    def _interrupt(self, signum, frame) -> None:
        if self._interrupted:  # Second Ctrl-C: stop now.
            raise KeyboardInterrupt
        self._interrupted = True
        tqdm.write('interrupt: finishing this epoch, then saving a '
                   'checkpoint (Ctrl-C again to stop at once, losing the '
                   'epoch)')

    def result_record(self, result: FitResult,
                      dataset: str) -> Dict[str, Any]:
        r"""The result of :meth:`fit` as one JSON-ready record (what
        :obj:`diffkg-pyg train --output` writes): the model, the dataset,
        the preset, every hyper-parameter and training setting, then
        :meth:`FitResult.to_dict` and the process's peak memory in MiB."""
        settings = {**self.settings, **self._fit_settings,
                    'eval_batch_size': self.eval_batch_size}
        backend = (torch.distributed.get_backend() if self.world_size > 1
                   else None)
        return {'model': self.recipe.name, 'dataset': dataset,
                'seed': self.settings['seed'], 'preset': self.recipe.preset,
                'hyperparameters': self.recipe.hparams, 'settings': settings,
                'world_size': self.world_size, 'backend': backend,
                **result.to_dict(), 'peak_rss_mb': peak_rss_mb(),
                **({'peak_rss_mb_ranks': distributed.all_gather_objects(
                    peak_rss_mb())} if self.world_size > 1 else {})}

    def save_model(self, path: str) -> None:
        r"""Saves the current (after :meth:`fit`: the best) model for
        inference; see :func:`~diffkg_pyg.train.load_model`."""
        save_model(path, self.recipe, self.model, self.sizes,
                   self.train_edge_index)
