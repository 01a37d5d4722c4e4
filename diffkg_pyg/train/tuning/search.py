r"""How a study searches: its sampler and its pruner (Optuna, imported
here; :func:`~diffkg_pyg.train.tune` imports this module when it runs)."""
import hashlib
import math
from typing import Any, Callable

import optuna

from diffkg_pyg.train.tuning.study import PRUNERS, SAMPLERS

__all__ = ['PerTrialSeed', 'startup_trials', 'study_seed', 'make_sampler',
           'pruning_warmup', 'make_pruner']


class PerTrialSeed(optuna.samplers.BaseSampler):
    r"""A sampler whose draws for trial :math:`k` come from
    :obj:`make(seed + k)`: reproducible in one process, distinct across
    parallel processes (each trial has its own number), and a resumed
    study continues its own sequence. TPE keeps no state but its random
    generator and the study's trials, so the wrapped TPE is TPE.

    Args:
        make (callable): A seed to an Optuna sampler.
        seed (int): The study's seed.
    """
    def __init__(self, make: Callable[[int], Any], seed: int) -> None:
        self.make, self.seed = make, seed
        self.current = make(seed)

    def before_trial(self, study, trial) -> None:
        # Optuna calls it when a trial is created, before any sampling.
        self.current = self.make(self.seed + trial.number)
        self.current.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self.current.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self.current.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, name, distribution):
        return self.current.sample_independent(study, trial, name,
                                               distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self.current.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.current.reseed_rng()


def startup_trials(n_trials: int) -> int:
    r"""The random trials TPE starts with: a quarter of the budget, at
    least 3 (the default configuration, enqueued first, is one of them)."""
    return max(3, math.ceil(n_trials / 4))


def study_seed(seed: int, study_name: str) -> int:
    r"""The seed of a study's sampler, from the run's seed and the study's
    name, so that studies of other models or data explore differently."""
    digest = hashlib.sha256(f'{seed}:{study_name}'.encode()).digest()
    return int.from_bytes(digest[:4], 'little')


def make_sampler(kind: str, seed: int, study_name: str,
                 n_trials: int) -> PerTrialSeed:
    r"""The sampler of a study: :obj:`'tpe'`, multivariate TPE with
    :func:`startup_trials` random trials, trial :math:`k` drawn with the
    seed :func:`study_seed` :math:`+ k`; :obj:`'random'`, uniform draws
    with the seed :obj:`study_seed(seed, 'random')` :math:`+ k`, the same
    for every study, so that trial :math:`k` draws the same values in
    every study of the same space and seed (common random numbers, for
    comparing models draw for draw)."""
    if kind not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)} "
                         f'(got {kind!r})')
    if kind == 'random':
        return PerTrialSeed(
            lambda seed: optuna.samplers.RandomSampler(seed=seed),
            study_seed(seed, 'random'))
    startup = startup_trials(n_trials)
    return PerTrialSeed(lambda seed: optuna.samplers.TPESampler(
        seed=seed, multivariate=True, n_startup_trials=startup),
        study_seed(seed, study_name))


def pruning_warmup(patience: int, eval_every: int) -> int:
    r"""The first epoch at which a trial may be pruned: the early-stopping
    patience, and never before its third validation."""
    return max(patience, 3 * eval_every)


def make_pruner(kind: Any, warmup: int):
    r"""The pruner: :obj:`'median'`, Optuna's
    :class:`~optuna.pruners.MedianPruner`, which compares a trial's best
    validation metric so far with the median of the complete trials at the
    same epoch, from the sixth complete trial on and from epoch
    :obj:`warmup` (:func:`pruning_warmup`) on; :obj:`'none'`; or a pruner
    object, used as it is."""
    if isinstance(kind, str) and kind not in PRUNERS:
        raise ValueError(f"pruner must be one of {', '.join(PRUNERS)} (got "
                         f'{kind!r})')
    if kind == 'median':
        return optuna.pruners.MedianPruner(n_startup_trials=5,
                                           n_warmup_steps=warmup)
    return optuna.pruners.NopPruner() if kind == 'none' else kind
