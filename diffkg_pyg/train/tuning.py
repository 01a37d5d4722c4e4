r"""Hyper-parameter search under the package's protocol, with `Optuna
<https://optuna.org>`_ (the ``[tune]`` extra; imported only here).

Every trial is one :class:`~diffkg_pyg.train.Trainer` fit with validation
early stopping, on a copy of the data whose test interactions are removed,
so that nothing in a search can read them; its value is the best
validation Recall@20. A model's search space is declared with its
hyper-parameters (:attr:`HyperParameter.space
<diffkg_pyg.train.HyperParameter.space>` and
:attr:`Recipe.setting_spaces <diffkg_pyg.train.Recipe.setting_spaces>`),
where its command-line flags come from; a value given to :func:`tune`
fixes a hyper-parameter (it is not searched) and a :obj:`space` mapping
overrides or adds ranges.

The study lives in a relational database (a SQLite file by default), so
that a killed search resumes where it stopped and several processes given
the same storage and study name share one search:

* the process that creates the study writes its settings (model,
  space, fixed values) and its first trial; processes that find it compare
  their settings with those, and refuse to join a study of other ones;
* finished trials (complete, pruned, or failed with an error such as a
  diverged loss) count towards :obj:`n_trials`; a process starts trials
  until the study holds that many (processes that start their last trials
  together may each add one);
* a trial whose process died stops sending its heartbeat; once it is
  :obj:`2 * heartbeat` seconds old it is marked failed, and its parameters
  are run again as a new trial (Optuna's
  :class:`~optuna.storages.RetryFailedTrialCallback`).

The first trial of a new study is the default configuration (the
defaults, the preset and the fixed values; a default outside its space is
drawn instead), so that a search does not end below it on validation. The
sampler is Optuna's TPE, seeded with the run's seed plus the trial's
number, so that a study run in one process is reproducible and trials of
parallel processes do not draw the same values.
"""
import copy
import json
import math
import os
import os.path as osp
import statistics
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Type

import torch
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from diffkg_pyg.data.graph import USER_ITEM
from diffkg_pyg.train.hyperparameters import (
    TRAIN_SETTINGS,
    HyperParameter,
    Space,
    lookup,
    read_config,
    resolve,
    split_config,
)
from diffkg_pyg.train.recipe import Recipe
from diffkg_pyg.train.registry import get_recipe
from diffkg_pyg.train.results import NonFiniteLossError
from diffkg_pyg.train.trainer import Trainer
from diffkg_pyg.utils import save_json

__all__ = ['search_space', 'read_space', 'tune', 'TuneResult',
           'write_config', 'without_test', 'PRUNERS']

PRUNERS = ('median', 'none')
METRIC = 'recall@20'
#: Trial user attributes: the full configuration and the error of a
#: trial that failed by itself (not by its process dying).
_CONFIG, _ERROR = 'config', 'error'


def _canonical(recipe: Type[Recipe]) -> Dict[str, Tuple[HyperParameter,
                                                        bool]]:
    r"""Name or alias -> (parameter, is a training setting)."""
    out = {k: (p, True) for k, (p, _) in lookup(TRAIN_SETTINGS).items()}
    out.update({k: (p, False) for k, (p, _) in
                lookup(recipe.hyperparameters).items()})
    return out


def search_space(recipe: Type[Recipe], fixed: Any = (),
                 overrides: Optional[Mapping[str, Space]] = None
                 ) -> Dict[str, Tuple[HyperParameter, Space]]:
    r"""The search space of a model: every hyper-parameter and training
    setting with a declared space, with :obj:`overrides` (names or
    aliases to :class:`Space`) on top, less the names in :obj:`fixed`.

    Returns:
        name -> :obj:`(parameter, space)`, in declaration order.
    """
    names = _canonical(recipe)
    out: Dict[str, Tuple[HyperParameter, Space]] = {}
    for parameter in TRAIN_SETTINGS:
        space = recipe.setting_spaces.get(parameter.name, parameter.space)
        if space is not None:
            out[parameter.name] = (parameter, space)
    for parameter in recipe.hyperparameters:
        if parameter.space is not None:
            out[parameter.name] = (parameter, parameter.space)
    for key, space in (overrides or {}).items():
        if key not in names:
            raise ValueError(f'search space: unknown key {key!r}: neither '
                             f'a training setting nor a hyper-parameter of '
                             f'{recipe.name}')
        parameter = names[key][0]
        if parameter.name == 'seed':
            raise ValueError('search space: the seed is not searched (it '
                             'is fixed for every trial)')
        space.check(parameter)
        out[parameter.name] = (parameter, space)
    fixed = {names[k][0].name if k in names else k for k in fixed}
    clash = sorted(k for k in fixed if overrides and k in {
        names[o][0].name for o in overrides})
    if clash:
        raise ValueError(f'{clash[0]} is both given a value and searched '
                         f'(drop one)')
    return {k: v for k, v in out.items() if k not in fixed}


def read_space(path: str, recipe: Type[Recipe]
               ) -> Tuple[Dict[str, Space], Dict[str, Any]]:
    r"""Reads a :obj:`--space` TOML file: a table per searched name
    (:obj:`[lr]` with :obj:`low`, :obj:`high`, optional :obj:`log` and
    :obj:`step`, or :obj:`choices = [...]`), or a plain value to fix a
    parameter (:obj:`ssl_weight = 0.0`). Returns the spaces and the fixed
    values (both by name or alias as written)."""
    names = _canonical(recipe)
    spaces, fixed = {}, {}
    for key, value in read_config(path).items():
        if key not in names:
            raise ValueError(f'{path}: unknown key {key!r}: neither a '
                             f'training setting nor a hyper-parameter of '
                             f'{recipe.name}')
        if isinstance(value, dict):
            spaces[key] = Space.from_config(value, f'{path}: [{key}]: ')
            spaces[key].check(names[key][0], f'{path}: ')
        else:
            fixed[key] = value
    return spaces, fixed


def without_test(data: HeteroData) -> HeteroData:
    r"""A shallow copy of :obj:`data` without test interactions (what a
    search trains and validates on)."""
    out = copy.copy(data)
    store = out[USER_ITEM]
    store.test_edge_index = store.test_edge_index.new_empty((2, 0))
    return out


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
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path + '.tmp', 'w') as f:
        f.write('\n'.join(lines) + '\n')
    os.replace(path + '.tmp', path)


@dataclass
class TuneResult:
    r"""The outcome of :func:`tune`.

    Attributes:
        study_name (str): The Optuna study.
        storage (str): Its database URL.
        best_trial (int): The number of the best trial.
        best_value (float): Its validation Recall@20.
        best_params (dict): Its searched values.
        best_config (dict): Its full configuration (the model, every
            training setting and hyper-parameter), as in :obj:`best.toml`.
        config_path (str): The path of :obj:`best.toml`.
        states (dict): The number of trials in each state.
        final (list of dict): The result records of the retrained best
            configuration, one per final seed.
        final_test (dict): Mean and standard deviation of each test metric
            over :obj:`final` (:obj:`{metric: (mean, std)}`).
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


def _jsonable(values: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in values.items()}


def _seconds_used(study) -> float:
    # The summed durations of the finished trials (the study's budget).
    return sum((t.datetime_complete - t.datetime_start).total_seconds()
               for t in study.get_trials(deepcopy=False)
               if _counted(t) and t.datetime_start is not None
               and t.datetime_complete is not None)


def _counted(trial) -> bool:
    import optuna
    state = trial.state
    return (state in (optuna.trial.TrialState.COMPLETE,
                      optuna.trial.TrialState.PRUNED) or
            (state == optuna.trial.TrialState.FAIL and
             _ERROR in trial.user_attrs))


def _open_study(storage: str, study_name: str, seed: int, pruner: Any,
                heartbeat: float, attributes: Dict[str, Any],
                first_trial: Dict[str, Any], wait: float = 60.0):
    import optuna
    if isinstance(pruner, str) and pruner not in PRUNERS:
        raise ValueError(f"pruner must be one of {', '.join(PRUNERS)} (got "
                         f'{pruner!r})')
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storages = optuna.storages
    from sqlalchemy.exc import SQLAlchemyError
    with warnings.catch_warnings():  # Heartbeats are "experimental".
        warnings.simplefilter('ignore',
                              optuna.exceptions.ExperimentalWarning)
        if hasattr(storages, 'RetryHeartbeatStaleTrialCallback'):  # >= 4.9
            retry = {'heartbeat_stale_trial_callback':
                     storages.RetryHeartbeatStaleTrialCallback(max_retry=1)}
        else:  # pragma: no cover
            retry = {'failed_trial_callback':
                     storages.RetryFailedTrialCallback(max_retry=1)}
    # Pruning compares a trial's validation metric at an epoch with the
    # median of earlier trials at that epoch, from the sixth trial on:
    chosen = (optuna.pruners.MedianPruner(n_startup_trials=5,
                                          n_warmup_steps=5)
              if pruner == 'median' else optuna.pruners.NopPruner()
              if pruner == 'none' else pruner)
    options = dict(study_name=study_name, pruner=chosen,
                   sampler=optuna.samplers.TPESampler(seed=seed))
    # Processes starting together race to create the tables and the study.
    # Creating a study is atomic: one process wins it, and only that one
    # writes the study's settings and its first trial; the others load it.
    for attempt in range(10):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter(
                    'ignore', optuna.exceptions.ExperimentalWarning)
                rdb = storages.RDBStorage(
                    storage, heartbeat_interval=max(1, round(heartbeat)),
                    grace_period=max(2, round(2 * heartbeat)), **retry)
            try:
                study = optuna.create_study(storage=rdb,
                                            direction='maximize', **options)
                created = True
            except optuna.exceptions.DuplicatedStudyError:
                study = optuna.load_study(storage=rdb, **options)
                created = False
            break
        except SQLAlchemyError as error:
            if attempt == 9:
                raise ValueError(f'{storage}: could not open the study '
                                 f'{study_name!r}: {error}') from None
            time.sleep(0.2 * (attempt + 1))
    if created:
        if first_trial:
            study.enqueue_trial(first_trial)
        # The settings last: a loader that finds them all finds the first
        # trial too.
        for key, value in attributes.items():
            study.set_user_attr(key, value)
        return study
    # Written by the creator a moment ago, or by a creator killed before it
    # finished (then never complete).
    deadline = time.monotonic() + wait
    saved = study.user_attrs
    while not all(key in saved for key in attributes):
        if time.monotonic() > deadline:
            raise ValueError(
                f'the study {study_name!r} in {storage} has no complete '
                f'settings: the process that created it stopped before '
                f'writing them; use another --study-name or --output')
        time.sleep(0.1)
        saved = study.user_attrs
    differ = [k for k in attributes if saved[k] != attributes[k]]
    if differ:
        raise ValueError(
            f'the study {study_name!r} in {storage} was started with '
            f'another {differ[0]} ({saved[differ[0]]!r}, now '
            f'{attributes[differ[0]]!r}); use another --study-name or '
            f'--output')
    return study


def tune(data: HeteroData, model: Any, n_trials: int, output: str, *,
         dataset: str = 'data', preset: Optional[str] = None,
         hyperparameters: Optional[Mapping[str, Any]] = None,
         settings: Optional[Mapping[str, Any]] = None,
         space: Optional[Mapping[str, Space]] = None,
         storage: Optional[str] = None, study_name: Optional[str] = None,
         pruner: Any = 'median', timeout: Optional[float] = None,
         final_seeds: int = 0, heartbeat: float = 30.0,
         device: Optional[torch.device] = None,
         log: Optional[Callable[[str], None]] = None) -> TuneResult:
    r"""Searches the hyper-parameters of :obj:`model` on :obj:`data`,
    maximising validation Recall@20 (see the module's description).

    Writes into :obj:`output`: the study (:obj:`study.db`, unless
    :obj:`storage` says otherwise), one result JSON per trial
    (:obj:`trials/trial-00007.json`; pruned and failed trials too),
    :obj:`best.toml` (what ``diffkg-pyg train --config`` takes), the plot
    :obj:`study.png` (with matplotlib), and with :obj:`final_seeds`, the
    retrained best configuration's results (:obj:`final/seed-0.json`, ...)
    and their summary :obj:`final.json`.

    Args:
        data (HeteroData): The dataset graph (with its test interactions;
            the search never sees them).
        model (str or Recipe class): The registered model.
        n_trials (int): Finished trials the study should hold.
        output (str): The output folder.
        dataset (str, optional): The dataset's name in the records.
            (default: :obj:`'data'`)
        preset (str, optional): The model's preset under the search.
            (default: :obj:`None`)
        hyperparameters (dict, optional): Fixed hyper-parameters (names or
            aliases; not searched). (default: :obj:`None`)
        settings (dict, optional): Fixed training settings: the epoch cap
            and patience of every trial, its seed, ... (default:
            :obj:`None`: :data:`TRAIN_SETTINGS` defaults)
        space (dict, optional): Name or alias -> :class:`Space`, overriding
            or adding to the model's declared space. (default: :obj:`None`)
        storage (str, optional): An Optuna RDB URL. (default: the SQLite
            file :obj:`output/study.db`)
        study_name (str, optional): (default: :obj:`'<model>-<dataset>'`)
        pruner (str or optuna.pruners.BasePruner, optional):
            :obj:`'median'` (Optuna's median pruner on the validation metric
            of each validated epoch, after 5 trials and 5 epochs),
            :obj:`'none'`, or a pruner. (default: :obj:`'median'`)
        timeout (float, optional): No trial starts once the study's
            finished trials have taken this many seconds in all (their
            durations summed, over restarts and parallel processes, so
            that a resumed study keeps its budget; a running trial
            finishes). (default: :obj:`None`)
        final_seeds (int, optional): Retrain the best configuration with
            seeds :obj:`0, ..., final_seeds - 1` and test it.
            (default: :obj:`0`)
        heartbeat (float, optional): Seconds between a trial's heartbeats;
            a trial silent for twice that is taken as dead and retried.
            (default: :obj:`30.0`)
        device (torch.device, optional): Where to train. (default: CPU)
        log (callable, optional): Receives one line per trial.
            (default: :func:`tqdm.write`)
    """
    import optuna

    recipe_class = get_recipe(model) if isinstance(model, str) else model
    log = log or tqdm.write
    if n_trials < 1:
        raise ValueError(f'n_trials must be >= 1 (got {n_trials})')
    if final_seeds < 0:
        raise ValueError(f'final_seeds must be >= 0 (got {final_seeds})')
    hyperparameters = dict(hyperparameters or {})
    settings = dict(settings or {})
    names = _canonical(recipe_class)
    for key in settings:
        if key not in names or not names[key][1]:
            raise ValueError(f'unknown training setting {key!r}')
    spaces = search_space(recipe_class, [*hyperparameters, *settings],
                          space)
    if not spaces:
        raise ValueError(f'nothing to search: every hyper-parameter of '
                         f'{recipe_class.name} with a space is fixed')
    base = recipe_class(preset, **hyperparameters)  # Bad values fail here.
    seed = resolve(TRAIN_SETTINGS, settings)['seed']
    os.makedirs(osp.join(output, 'trials'), exist_ok=True)
    storage = storage or 'sqlite:///' + osp.abspath(osp.join(output,
                                                             'study.db'))
    study_name = study_name or f'{recipe_class.name}-{dataset}'
    attributes = {
        'model': recipe_class.name, 'dataset': dataset, 'preset': preset,
        'space': {k: s.to_dict() for k, (_, s) in spaces.items()},
        'fixed': _jsonable({**hyperparameters, **settings}),
        'metric': f'valid {METRIC}'}
    # The first trial is the default configuration (where it lies in the
    # space), so a search never ends below it on validation.
    defaults = {**resolve(TRAIN_SETTINGS, base.preset_settings, settings),
                **base.hparams}
    study = _open_study(storage, study_name, seed, pruner, heartbeat,
                        attributes, {name: space.encode(defaults[name])
                                     for name, (_, space) in spaces.items()
                                     if defaults[name] in space})
    search_data = without_test(data)

    def objective(trial) -> float:
        # A sampler per trial, seeded by the trial's number: reproducible
        # in one process, and distinct across processes.
        study.sampler = optuna.samplers.TPESampler(seed=seed + trial.number)
        values = {name: space.suggest(trial, parameter)
                  for name, (parameter, space) in spaces.items()}
        curve: List[Dict[str, float]] = []
        record: Dict[str, Any] = {'trial': trial.number,
                                  'params': _jsonable(values)}
        path = osp.join(output, 'trials', f'trial-{trial.number:05d}.json')
        started = time.perf_counter()
        try:
            recipe = recipe_class(preset, **hyperparameters, **{
                k: v for k, v in values.items() if not names[k][1]})
            run_settings = resolve(
                TRAIN_SETTINGS, recipe.preset_settings, settings,
                {k: v for k, v in values.items() if names[k][1]})
            config = {'model': recipe.name, **run_settings, **recipe.hparams}
            trial.set_user_attr(_CONFIG, _jsonable(config))
            trainer = Trainer.from_settings(recipe, search_data,
                                            run_settings, device=device,
                                            log=lambda line: None)

            def report(epoch: int, valid: Dict[str, float]) -> None:
                curve.append({'epoch': epoch, **valid})
                trial.report(valid[METRIC], epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f'pruned after epoch {epoch}')

            result = trainer.fit(run_settings['epochs'],
                                 run_settings['patience'], test=False,
                                 on_validation=report)
        except optuna.TrialPruned:
            save_json(path, {**record, 'state': 'pruned', 'curve': curve,
                             'seconds': time.perf_counter() - started,
                             'config': trial.user_attrs.get(_CONFIG)})
            raise
        except (ValueError, NonFiniteLossError) as error:
            trial.set_user_attr(_ERROR, str(error))
            save_json(path, {**record, 'state': 'failed',
                             'error': str(error), 'curve': curve,
                             'seconds': time.perf_counter() - started})
            raise
        save_json(path, {**record, 'state': 'complete',
                         **trainer.result_record(result, dataset)})
        return result.valid[METRIC]

    finished: List[Any] = []

    def on_trial_end(_, trial) -> None:
        finished.append(trial)

    done = sum(map(_counted, study.get_trials(deepcopy=False)))
    bar = tqdm(total=n_trials, initial=min(done, n_trials), desc='trials',
               disable=None)
    while done < n_trials:
        used = _seconds_used(study)
        if timeout is not None and used >= timeout:
            log(f'timeout: the finished trials took {used:.0f} s of '
                f'{timeout:g} s; {done} of {n_trials} trials finished')
            break
        finished.clear()
        study.optimize(objective, n_trials=1,
                       catch=(ValueError, NonFiniteLossError),
                       callbacks=[on_trial_end])
        for trial in finished:
            log(_trial_line(trial, study))
        now = sum(map(_counted, study.get_trials(deepcopy=False)))
        bar.update(max(0, min(now, n_trials) - min(done, n_trials)))
        done = now
    bar.close()
    return _finish(study, storage, output, dataset, data, recipe_class,
                   final_seeds, device, log)


def _trial_line(trial, study) -> str:
    state = trial.state.name.lower()
    value = '' if trial.value is None else f' valid {METRIC} ' \
        f'{trial.value:.4f}'
    error = trial.user_attrs.get(_ERROR)
    try:
        best = f' (best: trial {study.best_trial.number}, ' \
            f'{study.best_value:.4f})'
    except ValueError:
        best = ''
    params = ', '.join(f'{k}={v}' for k, v in trial.params.items())
    return (f'trial {trial.number} {state}{value}{best}' +
            (f': {error}' if error else '') + f' | {params}')


def _finish(study, storage: str, output: str, dataset: str,
            data: HeteroData, recipe_class: Type[Recipe], final_seeds: int,
            device, log) -> TuneResult:
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
    config = dict(best.user_attrs[_CONFIG])
    config_path = osp.join(output, 'best.toml')
    write_config(config_path, config, comment=(
        f'The best trial ({best.number}) of the study {study.study_name!r} '
        f'({len(trials)} trials, {storage}):\nvalid {METRIC} '
        f'{best.value:.6f}. Train it: diffkg-pyg train {dataset} --config '
        f'{config_path}'))
    _plot(study, osp.join(output, 'study.png'), log)
    log(f'best trial {best.number}: valid {METRIC} {best.value:.4f} | ' +
        ', '.join(f'{k}={v}' for k, v in best.params.items()))
    log(f'best configuration: {config_path}')
    result = TuneResult(study.study_name, storage, best.number, best.value,
                        dict(best.params), config, config_path, states)
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
    for seed in range(final_seeds):
        path = osp.join(output, 'final', f'seed-{seed}.json')
        if osp.exists(path):  # Resumed: kept.
            with open(path) as f:
                result.final.append(json.load(f))
            continue
        run = {**settings, 'seed': seed}
        trainer = Trainer.from_settings(recipe_class(**hyperparameters),
                                        data, run, device=device,
                                        log=lambda line: None)
        fit = trainer.fit(run['epochs'], run['patience'])
        record = {**trainer.result_record(fit, dataset),
                  'best_trial': result.best_trial}
        save_json(path, record)
        result.final.append(record)
        log(f'final seed {seed}: test {METRIC} {fit.test[METRIC]:.4f}, '
            f'ndcg@20 {fit.test["ndcg@20"]:.4f} (best epoch '
            f'{fit.best_epoch})')
    metrics = result.final[0]['test']
    for metric in metrics:
        values = [r['test'][metric] for r in result.final]
        result.final_test[metric] = (
            statistics.mean(values),
            statistics.stdev(values) if len(values) > 1 else 0.0)
    save_json(osp.join(output, 'final.json'), {
        'best_trial': result.best_trial, 'valid': result.best_value,
        'config': result.best_config, 'seeds': list(range(final_seeds)),
        'test': {k: {'mean': m, 'std': s}
                 for k, (m, s) in result.final_test.items()}})
    summary = ', '.join(f'{k} {m:.4f} ± {s:.4f}' for k, (m, s) in
                        result.final_test.items() if k.endswith('@20'))
    log(f'test over {final_seeds} seeds: {summary}')


def _plot(study, path: str, log) -> None:
    r"""Best validation metric against trial, and the parameters'
    importances where Optuna's evaluator runs (PNG; needs matplotlib)."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        log('no plot: matplotlib is not installed (pip install '
            "'diffkg-pyg[bench]')")
        return
    import optuna

    trials = sorted((t for t in study.get_trials(deepcopy=False)
                     if t.state == optuna.trial.TrialState.COMPLETE),
                    key=lambda t: t.number)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            importances = optuna.importance.get_param_importances(study)
    except (ImportError, RuntimeError, ValueError):
        importances = {}  # E.g. fewer than two complete trials.
    figure, axes = plt.subplots(1, 2 if importances else 1,
                                figsize=(11 if importances else 6, 4),
                                squeeze=False)
    axis = axes[0][0]
    numbers = [t.number for t in trials]
    values = [t.value for t in trials]
    best = [max(values[:i + 1]) for i in range(len(values))]
    axis.plot(numbers, values, 'o', alpha=0.5, label='trial')
    axis.step(numbers, best, where='post', label='best so far')
    axis.set_xlabel('trial')
    axis.set_ylabel(f'valid {METRIC}')
    axis.set_title(study.study_name)
    axis.legend()
    if importances:
        axis = axes[0][1]
        keys = list(importances)[::-1]
        axis.barh(keys, [importances[k] for k in keys])
        axis.set_xlabel("importance (Optuna's default evaluator)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
