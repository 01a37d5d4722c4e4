r"""The Optuna study of a search: opening or joining it in a relational
database (safe for processes starting together), which trials count
towards the budget, and the seconds they took."""
import glob
import json
import os.path as osp
import time
import warnings
from typing import Any, Callable, Dict, List, Optional

from tqdm.auto import tqdm

from diffkg_pyg.files import save_json
from diffkg_pyg.train.results import NonFiniteLossError

__all__ = ['PRUNERS', 'SAMPLERS', 'METRIC', 'CONFIG', 'ERROR',
           'open_study', 'counted', 'seconds_used', 'run_trials',
           'trial_line', 'claim_output', 'wait_for_running', 'OUTPUT_FILE']

#: The file of a study's output folder that names its study.
OUTPUT_FILE = 'study.json'

#: The pruners of ``tune --pruner`` (see :mod:`~diffkg_pyg.train.tuning`).
PRUNERS = ('median', 'none')
#: The samplers of ``tune --sampler``.
SAMPLERS = ('tpe', 'random')
METRIC = 'recall@20'
#: Trial user attributes: the full configuration and the error of a
#: trial that failed by itself (not by its process dying).
CONFIG, ERROR = 'config', 'error'


def seconds_used(study) -> float:
    # The summed durations of the finished trials (the study's budget).
    return sum((t.datetime_complete - t.datetime_start).total_seconds()
               for t in study.get_trials(deepcopy=False)
               if counted(t) and t.datetime_start is not None
               and t.datetime_complete is not None)


def counted(trial) -> bool:
    import optuna
    state = trial.state
    return (state in (optuna.trial.TrialState.COMPLETE,
                      optuna.trial.TrialState.PRUNED) or
            (state == optuna.trial.TrialState.FAIL and
             ERROR in trial.user_attrs))


def open_study(storage: str, study_name: str, sampler: Any, pruner: Any,
               heartbeat: float, attributes: Dict[str, Any],
               first_trial: Dict[str, Any], wait: float = 60.0,
               notes: Optional[Dict[str, Any]] = None):
    r"""Creates or joins the study :obj:`study_name` in :obj:`storage`:
    :obj:`attributes` are the settings a joining process must share,
    :obj:`notes` what the creator records beside them (the package
    version and commit); both are user attributes of the study."""
    import optuna
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
    options = dict(study_name=study_name, pruner=pruner, sampler=sampler)
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
        for key, value in {**(notes or {}), **attributes}.items():
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




def _study_names(storage: str) -> List[str]:
    import optuna
    from sqlalchemy.exc import SQLAlchemyError
    # Processes starting together race to create the tables: retried, as
    # in open_study; a database that stays unreadable is an error.
    for attempt in range(10):
        try:
            return optuna.get_all_study_names(storage)
        except (SQLAlchemyError, ValueError, RuntimeError) as error:
            text = str(error)
            # (Tables created twice, a locked file, or the schema's
            # version row written by two processes at once.)
            racing = any(sign in text for sign in (
                'already exists', 'locked', 'UNIQUE constraint failed'))
            if attempt == 9 or not racing:
                raise ValueError(
                    f'{storage}: not a readable Optuna study database '
                    f'({str(error).splitlines()[0]}); use another '
                    f'--storage or --output') from None
            time.sleep(0.2 * (attempt + 1))
    return []  # pragma: no cover


def claim_output(output: str, study_name: str, storage: str) -> None:
    r"""Ties the folder :obj:`output` to the study :obj:`study_name`
    (:obj:`output/study.json`), so that what it holds (trial, confirmation
    and final runs) is never read back as another study's.

    Raises :class:`ValueError` when the folder belongs to another study,
    and when it holds runs of a study that :obj:`storage` does not hold
    (an empty or foreign database would otherwise start a new study over
    the old runs)."""
    path = osp.join(output, OUTPUT_FILE)
    names = _study_names(storage)
    try:
        with open(path) as f:
            claimed = json.load(f)['study_name']
    except FileNotFoundError:
        claimed = None
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f'{path}: not readable ({error}); it names the '
                         f'study of this folder') from None
    if claimed is not None and claimed != study_name:
        raise ValueError(f'{output} holds the study {claimed!r} ({path}), '
                         f'not {study_name!r}; use another --output (each '
                         f'study has its own folder)')
    runs = [p for pattern in ('trials/*.json', 'confirm/*.json',
                              'final/*.json', 'final.json')
            for p in glob.glob(osp.join(output, pattern))]
    # Runs are written only once their study exists, so runs without the
    # study mean an empty or foreign database (the folder's marker alone
    # may be another process's that is creating the study now).
    if study_name not in names and runs:
        found = (f'it holds the studies {names}' if names else
                 'it holds no study (an empty or new database)')
        raise ValueError(
            f'{output} holds runs of the study {study_name!r} but '
            f'{storage} does not have that study ({found}); restore the '
            f'study database, or use another --output')
    if claimed is None:
        save_json(path, {'study_name': study_name, 'storage': storage})


def wait_for_running(study, poll: float = 5.0,
                     log: Optional[Callable[[str], None]] = None) -> None:
    r"""Waits until no trial of :obj:`study` is running (in any process),
    so that every process reads the same finished trials when it picks the
    candidates and the winner: the study is the source of truth. A trial
    whose process died is failed once its heartbeat is stale."""
    import optuna
    said = False
    while True:
        with warnings.catch_warnings():  # "Experimental".
            warnings.simplefilter('ignore',
                                  optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        running = [t.number for t in study.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.RUNNING, ))]
        if not running:
            return
        if log is not None and not said:
            log(f'waiting for trial(s) {running} of other processes before '
                f'choosing the winner')
            said = True
        time.sleep(poll)


def run_trials(study, objective: Callable, n_trials: int,
               timeout: Optional[float], log: Callable[[str], None]) -> None:
    r"""Runs trials of :obj:`objective` one at a time until the study holds
    :obj:`n_trials` finished ones (those of every process, earlier runs
    included) or, with :obj:`timeout`, until its finished trials have taken
    that many seconds in all; logs one line per trial."""
    finished: List[Any] = []

    def on_trial_end(_, trial) -> None:
        finished.append(trial)

    done = sum(map(counted, study.get_trials(deepcopy=False)))
    bar = tqdm(total=n_trials, initial=min(done, n_trials), desc='trials',
               disable=None)
    while done < n_trials:
        used = seconds_used(study)
        if timeout is not None and used >= timeout:
            log(f'timeout: the finished trials took {used:.0f} s of '
                f'{timeout:g} s; {done} of {n_trials} trials finished')
            break
        finished.clear()
        study.optimize(objective, n_trials=1,
                       catch=(ValueError, NonFiniteLossError),
                       callbacks=[on_trial_end])
        for trial in finished:
            log(trial_line(trial, study))
        now = sum(map(counted, study.get_trials(deepcopy=False)))
        bar.update(max(0, min(now, n_trials) - min(done, n_trials)))
        done = now
    bar.close()


def trial_line(trial, study) -> str:
    r"""One line on a finished trial: its state, value, the best so far
    and its parameters."""
    state = trial.state.name.lower()
    value = '' if trial.value is None else f' valid {METRIC} ' \
        f'{trial.value:.4f}'
    error = trial.user_attrs.get(ERROR)
    try:
        best = f' (best: trial {study.best_trial.number}, ' \
            f'{study.best_value:.4f})'
    except ValueError:
        best = ''
    params = ', '.join(f'{k}={v}' for k, v in trial.params.items())
    return (f'trial {trial.number} {state}{value}{best}' +
            (f': {error}' if error else '') + f' | {params}')
