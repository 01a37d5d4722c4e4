r"""What a search leaves behind: the best configuration as TOML (what
``diffkg-pyg train --config`` reads), the retrained winner's results, the
study plot and one line per trial."""
import functools
import json
import math
import os.path as osp
import statistics
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type

from torch_geometric.data import HeteroData

from diffkg_pyg.files import atomic_write, save_json
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

__all__ = ['TuneResult', 'write_config', 'jsonable', 'finish',
           'plot_study', 'final_path']


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (list, tuple)):
        return '[' + ', '.join(_toml(v) for v in value) + ']'
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else \
            ('nan' if math.isnan(value) else
             ('inf' if value > 0 else '-inf'))
    return str(value)


def write_config(path: str, config: Mapping[str, Any],
                 comment: str = '') -> None:
    r"""Writes a flat configuration (what ``diffkg-pyg train --config``
    reads) as TOML; keys whose value is :obj:`None` (a default of
    :obj:`None`) are left out."""
    lines = [f'# {line}' for line in comment.splitlines()]
    lines += [f'{key} = {_toml(value)}' for key, value in config.items()
              if value is not None]
    def write(temporary: str) -> None:
        with open(temporary, 'w') as f:
            f.write('\n'.join(lines) + '\n')
    atomic_write(path, write)


@dataclass
class TuneResult:
    r"""The outcome of :func:`tune`.

    Attributes:
        study_name (str): The Optuna study.
        storage (str): Its database URL.
        best_trial (int): The winning trial: the confirmation's winner,
            else the trial of the best validation metric.
        best_value (float): Its validation Recall@20 in the search.
        best_params (dict): Its searched values.
        best_config (dict): Its full configuration (the model, every
            training setting and hyper-parameter), as in :obj:`best.toml`.
        config_path (str): The path of :obj:`best.toml`.
        states (dict): The number of trials in each state.
        final (list of dict): The result records of the retrained best
            configuration, one per final seed.
        final_test (dict): Mean and standard deviation of each test metric
            over :obj:`final` (:obj:`{metric: (mean, std)}`).
        confirmation (dict, optional): The confirmation's summary (see
            :func:`~diffkg_pyg.train.tuning.confirmation.confirm`).
    """
    study_name: str
    storage: str
    best_trial: int
    best_value: float
    best_params: Dict[str, Any]
    best_config: Dict[str, Any]
    config_path: str
    states: Dict[str, int]
    final: List[Dict[str, Any]] = field(default_factory=list)
    final_test: Dict[str, Tuple[float, float]] = field(default_factory=dict)
    confirmation: Optional[Dict[str, Any]] = None


def jsonable(values: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in values.items()}


def finish(study, storage: str, output: str, dataset: str,
           data: HeteroData, recipe_class: Type[Recipe], final_seeds: int,
           device, log, confirmation: Optional[Dict[str, Any]] = None
           ) -> TuneResult:
    r"""Writes the winner's configuration (:obj:`best.toml`: the
    confirmation's winner, else the best trial), the plots, and with
    :obj:`final_seeds` its test results; returns the
    :class:`TuneResult`."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    states: Dict[str, int] = {}
    for trial in trials:
        states[trial.state.name.lower()] = states.get(
            trial.state.name.lower(), 0) + 1
    complete = [t for t in trials
                if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ValueError(f'no trial of the study {study.study_name!r} '
                         f'completed ({states}); see {output}/trials')
    best = study.best_trial
    how = 'the best trial'
    if confirmation is not None:
        best = next(t for t in complete
                    if t.number == confirmation['winner'])
        mean = next(row['mean'] for row in confirmation['candidates']
                    if row['trial'] == best.number)
        how = (f'the confirmed winner (mean valid {METRIC} {mean:.6f} over '
               f'the confirmation seeds; see confirm.json)')
    config = dict(best.user_attrs[CONFIG])
    config_path = osp.join(output, 'best.toml')
    write_config(config_path, config, comment=(
        f'Trial {best.number}, {how}, of the study {study.study_name!r} '
        f'({len(trials)} trials, {storage}):\nvalid {METRIC} '
        f'{best.value:.6f} in the search. Train it: diffkg-pyg train '
        f'{dataset} --config {config_path}'))
    plot_study(study, output, log)
    log(f'winner: trial {best.number}, valid {METRIC} {best.value:.4f} | ' +
        ', '.join(f'{k}={v}' for k, v in best.params.items()))
    log(f'best configuration: {config_path}')
    result = TuneResult(study.study_name, storage, best.number, best.value,
                        dict(best.params), config, config_path, states,
                        confirmation=confirmation)
    if final_seeds:
        _final(result, data, recipe_class, final_seeds, output, dataset,
               device, log)
    return result


def _final(result: TuneResult, data: HeteroData,
           recipe_class: Type[Recipe], final_seeds: int, output: str,
           dataset: str, device, log) -> None:
    settings, hyperparameters = split_config(result.best_config,
                                             result.config_path,
                                             recipe_class)
    settings = resolve(TRAIN_SETTINGS, settings)
    resolved = resolved_config(recipe_class, hyperparameters, settings)
    # Keyed by the trial: the final runs of an earlier winner stay apart
    # (and are never read back as this one's).
    result.final.extend(run_shared([
        (final_path(output, result.best_trial, seed), functools.partial(
            _final_run, result.best_trial, recipe_class, hyperparameters,
            {**settings, 'seed': seed}, data, device, log),
         run_identity(result.study_name, result.best_trial, seed,
                      resolved))
        for seed in range(final_seeds)]))
    metrics = result.final[0]['test']
    for metric in metrics:
        values = [r['test'][metric] for r in result.final]
        result.final_test[metric] = (
            statistics.mean(values),
            statistics.stdev(values) if len(values) > 1 else 0.0)
    save_json(osp.join(output, 'final.json'), {
        'study': result.study_name,
        'best_trial': result.best_trial, 'valid': result.best_value,
        'config': result.best_config, 'seeds': list(range(final_seeds)),
        'runs': [osp.relpath(final_path(output, result.best_trial, seed),
                             output) for seed in range(final_seeds)],
        'test': {k: {'mean': m, 'std': s}
                 for k, (m, s) in result.final_test.items()}})
    summary = ', '.join(f'{k} {m:.4f} ± {s:.4f}' for k, (m, s) in
                        result.final_test.items() if k.endswith('@20'))
    log(f'test over {final_seeds} seeds: {summary}')


def final_path(output: str, trial: int, seed: int) -> str:
    r"""The result file of the final run of :obj:`trial` with
    :obj:`seed`: :obj:`output/final/trial-NNNNN-seed-S.json`."""
    return osp.join(output, 'final', f'trial-{trial:05d}-seed-{seed}.json')


def _final_run(best_trial: int, recipe_class: Type[Recipe],
               hyperparameters: Dict[str, Any], run: Dict[str, Any],
               data: HeteroData, device, log) -> Dict[str, Any]:
    record, fit = fit_run(recipe_class, hyperparameters, run, data, device,
                          test=True)
    log(f'final seed {run["seed"]}: test {METRIC} {fit.test[METRIC]:.4f}, '
        f'ndcg@20 {fit.test["ndcg@20"]:.4f} (best epoch {fit.best_epoch})')
    return {**record, 'best_trial': best_trial}


def plot_study(study, output: str, log) -> None:
    r"""Optuna's matplotlib plots of the study: the optimisation history
    (:obj:`study.png`), every trial's validation curve
    (:obj:`curves.png`) and the parameters' importances
    (:obj:`importances.png`, with two complete trials or more)."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        log('no plot: matplotlib is not installed (pip install '
            "'diffkg-pyg[bench]')")
        return
    from optuna.visualization import matplotlib as plots

    for name, plot in (('study', plots.plot_optimization_history),
                       ('curves', plots.plot_intermediate_values),
                       ('importances', plots.plot_param_importances)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')  # "Experimental".
                axes = plot(study)
        except (ImportError, RuntimeError, ValueError):
            continue  # E.g. importances of fewer than two trials.
        figure = axes.figure if hasattr(axes, 'figure') else \
            axes.flat[0].figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        # Atomic: processes sharing the study each write the plots.
        atomic_write(osp.join(output, f'{name}.png'), functools.partial(
            figure.savefig, format='png', dpi=100))
        plt.close(figure)
