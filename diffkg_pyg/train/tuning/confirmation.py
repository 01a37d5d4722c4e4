r"""Confirmation before test: the best configurations of a search trained
again with other seeds, still on validation only, so that the winner is
the best on average and not one lucky seed."""
import functools
import os.path as osp
import statistics
from typing import Any, Callable, Dict, List, Optional, Type

import torch
from torch_geometric.data import HeteroData

from diffkg_pyg.files import save_json
from diffkg_pyg.hyperparameters import resolve
from diffkg_pyg.train.hyperparameters import TRAIN_SETTINGS, split_config
from diffkg_pyg.train.recipe import Recipe
from diffkg_pyg.train.tuning.shared import (
    fit_run,
    resolved_config,
    run_identity,
    run_shared,
)
from diffkg_pyg.train.tuning.study import CONFIG, METRIC

__all__ = ['confirmation_seeds', 'confirm']


def confirmation_seeds(seed: int, count: int) -> List[int]:
    r"""The seeds of the confirmation runs: :obj:`seed + 1`, ...,
    :obj:`seed + count` (the search itself ran with :obj:`seed`)."""
    return [seed + 1 + i for i in range(count)]


def confirm(study, data: HeteroData, recipe_class: Type[Recipe],
            output: str, top: int, seeds: int, seed: int,
            device: Optional[torch.device], log: Callable[[str], None]
            ) -> Optional[Dict[str, Any]]:
    r"""Trains each of the :obj:`top` complete trials with the best
    validation Recall@20 again with :func:`confirmation_seeds` (on
    :obj:`data`, which holds no test interactions) and returns the summary
    written to :obj:`output/confirm.json`: for every candidate its trial,
    the validation metric of each seed and their mean; :obj:`'winner'` is
    the trial with the best mean (:obj:`None` without a complete trial).
    Finished runs are kept in :obj:`output/confirm/` and not run again when
    the search resumes; processes tuning the same study split the runs
    (see :func:`~diffkg_pyg.train.tuning.shared.run_shared`).
    """
    import optuna
    complete = [t for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE]
    candidates = sorted(complete, key=lambda t: (-t.value, t.number))[:top]
    if not candidates:
        return None  # Nothing to confirm (finish says so).
    runs = []
    for trial in candidates:
        config = dict(trial.user_attrs[CONFIG])
        settings, hyperparameters = split_config(config, 'the trial',
                                                 recipe_class)
        settings = resolve(TRAIN_SETTINGS, settings)
        resolved = resolved_config(recipe_class, hyperparameters, settings)
        for run_seed in confirmation_seeds(seed, seeds):
            path = osp.join(output, 'confirm',
                            f'trial-{trial.number:05d}-seed-{run_seed}.json')
            runs.append((path, functools.partial(
                _run, trial.number, recipe_class, hyperparameters,
                {**settings, 'seed': run_seed}, data, device, log),
                run_identity(study.study_name, trial.number, run_seed,
                             resolved)))
    records = iter(run_shared(runs))
    rows = []
    for trial in candidates:
        values = [next(records)['valid'][METRIC] for _ in range(seeds)]
        mean = statistics.mean(values)
        rows.append({'trial': trial.number, 'search_value': trial.value,
                     'seeds': confirmation_seeds(seed, seeds),
                     'values': values, 'mean': mean,
                     'std': statistics.stdev(values) if len(values) > 1
                     else 0.0})
        log(f'confirm trial {trial.number}: valid {METRIC} '
            f'{trial.value:.4f} in the search, {mean:.4f} over seeds '
            f'{", ".join(map(str, confirmation_seeds(seed, seeds)))}')
    winner = max(rows, key=lambda row: (row['mean'], -row['trial']))
    summary = {'metric': f'valid {METRIC}', 'candidates': rows,
               'winner': winner['trial']}
    save_json(osp.join(output, 'confirm.json'), summary)
    return summary


def _run(number: int, recipe_class: Type[Recipe],
         hyperparameters: Dict[str, Any], run: Dict[str, Any],
         data: HeteroData, device: Optional[torch.device],
         log: Callable[[str], None]) -> Dict[str, Any]:
    record, fit = fit_run(recipe_class, hyperparameters, run, data, device,
                          test=False)
    log(f'confirm trial {number} seed {run["seed"]}: valid {METRIC} '
        f'{fit.valid[METRIC]:.4f} (best epoch {fit.best_epoch})')
    return {**record, 'trial': number}
