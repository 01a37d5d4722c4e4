r"""The one training loop of the package: every model, through its
:class:`~diffkg_pyg.train.Recipe`, under one protocol (BPR-style epochs,
validation after every epoch, early stopping on validation Recall@20, the
best epoch restored, then one test evaluation; the test set is never used
for selection), with checkpoints, exact resume and clean interruption."""
import contextlib
import math
import signal
import threading
import time
from typing import Any, Callable, Dict, Optional, Sequence

import torch
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from diffkg_pyg import distributed
from diffkg_pyg.data.graph import USER_ITEM
from diffkg_pyg.data.run_graph import RunGraph
from diffkg_pyg.data.tabular import raw_ids
from diffkg_pyg.data.validate import validate
from diffkg_pyg.evaluation import (
    RankingEvaluator,
    activity_buckets,
    evaluation_record,
    protocol_evaluators,
)
from diffkg_pyg.process import peak_gpu_mb, peak_rss_mb
from diffkg_pyg.train.checkpoint import fingerprint
from diffkg_pyg.train.checkpointer import Checkpointer
from diffkg_pyg.train.context import TrainContext
from diffkg_pyg.train.hyperparameters import check_settings
from diffkg_pyg.train.persistence import save_model
from diffkg_pyg.train.preflight import (
    lock_folder,
    probe_folder,
    remove_orphans,
)
from diffkg_pyg.train.recipe import Recipe, Sizes
from diffkg_pyg.train.results import (
    FitResult,
    FitState,
    TrainingInterrupted,
    check_divergence,
    code_record,
    dataset_record,
    phase_totals,
)

__all__ = ['Trainer']


def _format(value) -> str:
    if isinstance(value, int):
        return str(value)
    return f'{value:.4f}' if abs(value) >= 1e-3 or value == 0 else \
        f'{value:.3e}'


class Trainer:
    r"""Trains and evaluates the model of a :class:`Recipe` on a dataset
    graph (see :func:`~diffkg_pyg.data.build_hetero_data`) under the
    package's protocol.

    The recipe sees the run through a
    :class:`~diffkg_pyg.train.TrainContext` (:attr:`context`): its
    prepare, build, setup and optimiser hooks are called once (the model
    built after :obj:`torch.manual_seed(seed)`), then every epoch
    :meth:`Recipe.train_epoch` runs in training mode; every random draw
    goes through :attr:`context.generator` (seeded with :obj:`seed`), so a
    run is reproducible on CPU and its checkpoints resume exactly, and
    every optimiser step goes through :meth:`context.step
    <diffkg_pyg.train.TrainContext.step>`, which records the loss terms on
    the device (no host sync per step). After the epoch the terms' means
    are checked: a NaN or infinite one stops training with
    :class:`NonFiniteLossError` naming the term and the epoch, before any
    checkpoint of that epoch is written. Then the model is evaluated on
    validation; the best epoch's state (parameters and the recipe's state)
    is kept, training stops after :obj:`patience` epochs without a better
    validation :obj:`metric`, the best state is restored and tested.

    With :obj:`checkpoint_dir`, the :class:`~diffkg_pyg.train.Checkpointer`
    (:attr:`checkpointer`) writes :obj:`last.pt` every
    :obj:`checkpoint_every` epochs (and after the last one) and
    :obj:`best.pt` at every new best epoch, atomically; :meth:`fit` with
    :obj:`resume` continues from one exactly (a checkpoint of other data
    or other hyper-parameters is refused, naming the difference). A first
    Ctrl-C (SIGINT) lets the epoch finish, writes a checkpoint and raises
    :class:`TrainingInterrupted`; a second stops at once. SIGTERM (what
    schedulers and :obj:`torchrun` send) is handled the same way. The
    checkpoint folder is probed (writable, room for a checkpoint) and
    locked for the run before the first epoch (a second run on the same
    folder is refused), and the temporaries of killed processes in it are
    removed. A total loss that grows by :obj:`divergence_factor` in one
    epoch (or its square over the run) stops the run with
    :class:`DivergenceError`, like a non-finite one.

    **Several processes.** In a process group of :math:`P > 1` processes
    (:obj:`torchrun`, see :func:`~diffkg_pyg.distributed.
    init_from_env`), every rank builds the same model and draws the same
    random numbers; the steps a recipe shards through :meth:`TrainContext.shard
    <diffkg_pyg.train.TrainContext.shard>` (the
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
        ks (list of int, optional): Metric cut-offs (with the one of
            :obj:`metric`). (default: :obj:`(10, 20, 40)`)
        metrics (list of str, optional): The metrics of validation and
            test (with the one of :obj:`metric`, Recall and NDCG; names of
            :data:`~diffkg_pyg.evaluation.METRICS`).
            (default: :obj:`('recall', 'ndcg')`)
        eval_batch_size (int, optional): Users scored at once.
            (default: :obj:`1024`)
        eval_negatives (int, optional): Sampled ranking with this many
            negatives, drawn by :obj:`eval_sampler` (:obj:`'uniform'` or
            :obj:`'popularity'`; see
            :class:`~diffkg_pyg.evaluation.SampledRankingEvaluator`).
        device (torch.device, optional): Where to train. (default: CPU)
        checkpoint_dir (str, optional): Where :obj:`last.pt` and
            :obj:`best.pt` go. (default: :obj:`None`: no checkpoints)
        checkpoint_every (int, optional): Epochs between :obj:`last.pt`
            writes. (default: :obj:`1`)
        metric (str, optional): The validation metric to select on.
            (default: :obj:`'recall@20'`)
        log (callable, optional): Receives one line per epoch.
            (default: :func:`tqdm.write`)
        divergence_factor (float, optional): The divergence guard: a
            total loss whose epoch mean exceeds this many times the
            previous epoch's, or its square times the first epoch's (in
            absolute value, each at least :obj:`1e-3`), stops the run with
            :class:`DivergenceError` naming it, before that epoch's
            checkpoints; :obj:`None` turns the guard off (non-finite losses
            always stop). Over every committed run of the benchmarks, no
            total grew more than 273 times in one epoch (DiffKG's
            denoiser loss) nor 5.8e4 times over a run; a learning rate of
            1e3 takes MF's loss from 0.69 to 5e6 in one epoch.
            (default: :obj:`1e4`)
        interrupt_checkpoint (bool, optional): Whether an interruption
            without :obj:`checkpoint_dir` writes
            :obj:`diffkg-interrupted.pt` in the working folder (a search's
            trials do not: the study resumes instead). (default:
            :obj:`True`)
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
        metrics: Sequence[str] = ('recall', 'ndcg'),
        eval_batch_size: int = 1024,
        eval_negatives: Optional[int] = None,
        eval_sampler: str = 'uniform',
        device: Optional[torch.device] = None,
        checkpoint_dir: Optional[str] = None,
        checkpoint_every: int = 1,
        metric: str = 'recall@20',
        log: Optional[Callable[[str], None]] = None,
        divergence_factor: Optional[float] = 1e4,
        interrupt_checkpoint: bool = True,
    ) -> None:
        check_settings(lr=lr, weight_decay=weight_decay,
                       batch_size=batch_size, max_batches=max_batches,
                       eval_every=eval_every,
                       eval_batch_size=eval_batch_size, seed=seed)
        if checkpoint_every < 1:
            raise ValueError(f"'checkpoint_every' must be >= 1 (got "
                             f'{checkpoint_every!r})')
        if divergence_factor is not None and not (
                math.isfinite(divergence_factor) and divergence_factor > 1):
            raise ValueError(f"'divergence_factor' must be a finite number "
                             f'> 1, or None (got {divergence_factor!r})')
        self.divergence_factor = divergence_factor
        self.interrupt_checkpoint = interrupt_checkpoint
        validate(data)  # Nothing reaches a kernel unchecked.
        # The commit the results record is the one of the code that runs:
        # read now (and kept), not when a long run ends after a new commit.
        code_record()
        self.rank = distributed.get_rank()
        self.world_size = distributed.get_world_size()
        if batch_size % self.world_size != 0:
            raise ValueError(f'batch_size {batch_size} is not a multiple of '
                             f'the {self.world_size} processes (the global '
                             f'batch is split evenly among them)')
        self.recipe, self.metric = recipe, metric
        self.device = torch.device(device or 'cpu')
        self.log = (log or tqdm.write) if self.rank == 0 else \
            (lambda line: None)
        #: The settings a resumed checkpoint must share.
        self.settings = {'lr': lr, 'batch_size': batch_size,
                         'weight_decay': weight_decay, 'seed': seed,
                         'max_batches': max_batches, 'eval_every': eval_every}
        self.eval_every, self.eval_batch_size = eval_every, eval_batch_size
        self._fit_settings: Dict[str, Any] = {}
        self.sizes = Sizes.from_data(data)
        self.fingerprint = fingerprint(data)
        self.dataset = dataset_record(data, self.fingerprint)
        self.raw_ids = raw_ids(data)

        store = data[USER_ITEM]
        if store.val_edge_index.size(1) == 0:
            raise ValueError('the dataset has no validation interactions: '
                             'early stopping needs val_ratio > 0')
        train = store.edge_index
        name, k = metric.split('@')  # Early stopping reads it.
        self.evaluation = evaluation_record(
            [*ks, int(k)], [name, *metrics], eval_negatives, eval_sampler)
        if eval_negatives is not None:  # Resumed alike only; and said:
            self.settings['evaluation'] = self.evaluation
            self.log('sampled ranking: not comparable with full ranking')
        evaluators = protocol_evaluators(
            train, store.val_edge_index, store.test_edge_index,
            self.sizes.num_users, self.sizes.num_items,
            self.evaluation['ks'], eval_batch_size,
            self.evaluation['metrics'], eval_negatives, eval_sampler)
        self.valid_evaluator = evaluators['valid']
        self.test_evaluator = evaluators['test']

        #: What the recipe sees of the run.
        self.context = TrainContext(
            self.device, torch.Generator(self.device).manual_seed(seed),
            RunGraph.from_data(data, self.device), seed, lr,
            weight_decay, batch_size, max_batches, self.world_size,
            show_progress=self.rank == 0)
        recipe.prepare(data, self.context)
        torch.manual_seed(seed)
        self.model = recipe.build_model(self.sizes).to(self.device)
        distributed.broadcast_module(self.model)
        recipe.setup(self.model, self.context, data)
        self.optimizers = recipe.configure_optimizers(self.model,
                                                      self.context)
        self.context.optimizers = self.optimizers
        self.checkpointer = Checkpointer(
            self.model, recipe, self.optimizers, self.context.generator,
            self.settings, self.fingerprint, checkpoint_dir,
            checkpoint_every, sizes=self.sizes)
        self._interrupted = False
        self._on_validation: Optional[Callable] = None
        self._on_epoch: Optional[Callable] = None

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

    def evaluate(self, evaluator: RankingEvaluator,
                 users: Optional[torch.Tensor] = None) -> Dict[str, float]:
        r"""Evaluates the model (in evaluation mode) with
        :obj:`evaluator` (on :obj:`users` only, where given)."""
        self.model.eval()
        with torch.no_grad():
            scores = self.recipe.scores(self.model)
        return evaluator(scores, sharded=self.world_size > 1, users=users)

    def test_by_activity(self) -> Dict[str, Dict[str, float]]:
        r"""The test metrics of every user-activity bucket
        (:func:`~diffkg_pyg.evaluation.activity_buckets`, the coldest
        first), each with its number of test users."""
        buckets = activity_buckets(self.context.train_edge_index,
                                   self.sizes.num_users)
        return {label: {'users': n, **self.evaluate(self.test_evaluator,
                                                    users)}
                for label, users in buckets.items()
                if (n := self.test_evaluator.count(users))}

    def train_epoch(self, epoch: int) -> Dict[str, Any]:
        r"""Runs one training epoch; returns its record (loss-term means
        and what the recipe logs)."""
        self.model.train()
        self.context.accounting.reset()
        extra = self.recipe.train_epoch(self.model, self.context, epoch)
        return {**self.context.accounting.epoch_means(epoch), **extra}

    def fit(self, epochs: int, patience: int = 10,
            resume: Optional[str] = None, test: bool = True,
            on_validation: Optional[Callable[[int, Dict[str, float]],
                                             None]] = None,
            on_epoch: Optional[Callable[[Dict[str, float]], None]] = None,
            ) -> FitResult:
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
            on_epoch (callable, optional): Called with every epoch's record.
        """
        check_settings(epochs=epochs, patience=patience)
        self._fit_settings = {'epochs': epochs, 'patience': patience}
        self._on_validation, self._on_epoch = on_validation, on_epoch
        state = (self.checkpointer.load(resume) if resume else
                 FitState())
        with contextlib.ExitStack() as stack:
            if self.checkpointer.directory is not None and self.rank == 0:
                # Probed, locked for this run and cleaned before the first
                # epoch, not found unwritable after the last one.
                directory = self.checkpointer.directory
                probe_folder(directory, '--checkpoint-dir',
                             self.checkpointer.size_estimate())
                stack.enter_context(lock_folder(directory))
                remove_orphans(directory)
            start = time.perf_counter() - state.seconds
            self._fit_epochs(state, epochs, patience, start)
        if state.best_state is None:
            raise ValueError(f'nothing to test: the state has no epoch '
                             f'(epochs = {epochs}, epochs already run = '
                             f'{state.epoch})')
        self.checkpointer.restore(state.best_state)
        test_metrics = self.evaluate(self.test_evaluator) if test else {}
        by_activity = self.test_by_activity() if test else {}
        return FitResult(state.epoch, state.best_epoch,
                         time.perf_counter() - start, state.best_valid,
                         test_metrics,
                         state.history,
                         {**self.recipe.summary(self.model),
                          'phase_seconds': phase_totals(state.history),
                          'test_by_activity': by_activity})

    def _fit_epochs(self, state: FitState, epochs: int, patience: int,
                    start: float) -> None:
        # SIGTERM (what schedulers and torchrun send) is handled as SIGINT:
        # the epoch finishes, a checkpoint is written, the run stops.
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                handlers[signum] = signal.signal(signum, self._interrupt)
        try:
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
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            self._interrupted = False

    def _run_epoch(self, state: FitState, epoch: int, patience: int,
                   start: float, validate: bool = True) -> None:
        epoch_start = time.perf_counter()
        record = {'epoch': epoch, **self.train_epoch(epoch)}
        check_divergence(state.history, record, epoch,
                         self.context.accounting.totals,
                         self.divergence_factor)
        record['train_seconds'] = time.perf_counter() - epoch_start
        if not validate:
            self._append(state, record)
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
        self._append(state, record)
        state.epoch = epoch
        improved = valid[self.metric] > state.best_value
        if improved:
            state.best_value, state.best_epoch = valid[self.metric], epoch
            state.best_valid = valid
            state.best_state = self.checkpointer.snapshot()
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

    def _append(self, state: FitState, record: Dict[str, Any]) -> None:
        state.history.append(record)
        if self._on_epoch is not None and self.rank == 0:
            self._on_epoch(record)

    def _on_epoch_end(self, state: FitState, epochs: int) -> None:
        # The flag is read once: a signal that lands after the processes
        # have agreed waits for the next epoch's agreement, so every
        # process stops after the same epoch (a Ctrl-C on any stops all).
        interrupted = self._interrupted
        if self.world_size > 1:
            flag = torch.tensor([float(interrupted)], device=self.device)
            interrupted = bool(distributed.all_reduce_sum(flag) > 0)
        path = self.checkpointer.on_epoch_end(
            state, epochs, interrupted, fallback=self.interrupt_checkpoint)
        if interrupted:
            if path is None:
                raise TrainingInterrupted(
                    f'interrupted after epoch {state.epoch} (no checkpoint '
                    f'written)', None)
            raise TrainingInterrupted(
                f'interrupted after epoch {state.epoch}: checkpoint saved '
                f'to {path}; continue with --resume {path}', path)

    def _interrupt(self, signum, frame) -> None:
        if self._interrupted:  # A second signal: stop now.
            raise KeyboardInterrupt
        self._interrupted = True
        name = 'SIGTERM' if signum == signal.SIGTERM else 'interrupt'
        tqdm.write(f'{name}: finishing this epoch, then saving a '
                   f'checkpoint (Ctrl-C again to stop at once, losing the '
                   f'epoch)')

    def result_record(self, result: FitResult) -> Dict[str, Any]:
        r"""The result of :meth:`fit` as one JSON-ready record (what
        :obj:`diffkg-pyg train --output` writes): the model, the dataset
        (name, layout and content fingerprint:
        :func:`~diffkg_pyg.train.results.dataset_record`), the package's
        version and commit, the preset, every hyper-parameter and training
        setting, the device, then :meth:`FitResult.to_dict` and the
        process's peak memory in MiB (and on CUDA the device's peak
        allocated memory, :obj:`peak_gpu_mb`)."""
        settings = {**self.settings, **self._fit_settings,
                    'eval_batch_size': self.eval_batch_size}
        backend = (torch.distributed.get_backend() if self.world_size > 1
                   else None)
        return {'model': self.recipe.name, 'dataset': self.dataset,
                'code': code_record(),
                'seed': self.settings['seed'], 'preset': self.recipe.preset,
                'hyperparameters': self.recipe.hparams, 'settings': settings,
                'world_size': self.world_size, 'backend': backend,
                'device': str(self.device), 'evaluation': self.evaluation,
                **result.to_dict(),
                'peak_rss_mb': peak_rss_mb(), **peak_gpu_mb(self.device),
                **({'peak_rss_mb_ranks': distributed.all_gather_objects(
                    peak_rss_mb())} if self.world_size > 1 else {})}

    def save_model(self, path: str) -> None:
        r"""Saves the current (after :meth:`fit`: the best) model for
        inference; see :func:`~diffkg_pyg.train.load_model`."""
        save_model(path, self.recipe, self.model, self.sizes,
                   self.context.train_edge_index, self.raw_ids, self.dataset)
