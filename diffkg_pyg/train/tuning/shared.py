r"""The runs after a search (confirmation runs and final seeds), shared by
the processes that tune one study: each run writes its own JSON file, and
a process trains a run only while it holds that file's lock, so processes
started on the same :obj:`output` split the runs instead of repeating
them. A finished run is read back only when it is the run asked for (its
study, trial, seed and configuration, :func:`run_identity`); a file of
another run is refused, never read back. A run whose process died is taken
over (the lock goes with the process)."""
import contextlib
import hashlib
import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

from torch_geometric.data import HeteroData

from diffkg_pyg.files import file_lock, save_json
from diffkg_pyg.train.recipe import Recipe
from diffkg_pyg.train.results import FitResult
from diffkg_pyg.train.trainer import Trainer

__all__ = ['fit_run', 'run_shared', 'run_identity', 'record_identity',
           'config_digest', 'resolved_config']

Record = Dict[str, Any]


def config_digest(config: Dict[str, Any]) -> str:
    r"""The SHA-256 of a flat run configuration (model, training settings,
    hyper-parameters; tuples as lists) without its seed: what a run's file
    depends on besides its seed."""
    values = {k: list(v) if isinstance(v, tuple) else v
              for k, v in config.items() if k != 'seed'}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()
                          ).hexdigest()


def resolved_config(recipe_class: Type[Recipe],
                    hyperparameters: Dict[str, Any],
                    settings: Dict[str, Any]) -> Dict[str, Any]:
    r"""What a run trains with, flat: the model, every training setting and
    every hyper-parameter (defaults filled in), as a record holds them."""
    return {'model': recipe_class.name, **settings,
            **recipe_class(**hyperparameters).hparams}


def run_identity(study: str, trial: int, seed: int,
                 config: Dict[str, Any]) -> Dict[str, Any]:
    r"""What a run after the search depends on: the study's name, the
    trial whose configuration it trains, its seed and the digest of that
    configuration (:func:`config_digest`)."""
    return {'study': study, 'trial': trial, 'seed': seed,
            'config_sha256': config_digest(config)}


def record_identity(record: Record) -> Dict[str, Any]:
    r"""The :func:`run_identity` of a run's record, from what it holds
    (the model, settings and hyper-parameters it trained with; records of
    earlier versions name no study)."""
    trial = record.get('trial', record.get('best_trial'))
    config = {'model': record.get('model'), **record.get('settings', {}),
              **record.get('hyperparameters', {})}
    return {'study': record.get('run', {}).get('study'), 'trial': trial,
            'seed': record.get('seed'),
            'config_sha256': config_digest(config)}


def _mismatch(path: str, record: Record,
              expected: Optional[Dict[str, Any]]) -> Optional[str]:
    if expected is None:
        return None
    found = record_identity(record)
    differ = [f'{k} {found[k]!r} (expected {expected[k]!r})'
              for k in expected if found[k] != expected[k] and
              not (k == 'study' and found[k] is None)]
    if not differ:
        return None
    return (f'{path} holds another run than the one asked for: '
            f'{", ".join(differ)}; it is not read back: remove it, or use '
            f'another --output')


def fit_run(recipe_class: Type[Recipe], hyperparameters: Dict[str, Any],
            run: Dict[str, Any], data: HeteroData, device,
            test: bool) -> Tuple[Record, FitResult]:
    r"""Trains one run after the search, quietly: a confirmation run
    (:obj:`test=False`) or a final seed; returns its record and fit."""
    trainer = Trainer.from_settings(recipe_class(**hyperparameters), data,
                                    run, device=device,
                                    log=lambda line: None,
                                    interrupt_checkpoint=False)
    fit = trainer.fit(run['epochs'], run['patience'], test=test)
    return trainer.result_record(fit), fit


def _read(path: str) -> Optional[Record]:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _read_checked(path: str, expected: Optional[Dict[str, Any]]
                  ) -> Optional[Record]:
    try:
        record = _read(path)
    except (ValueError, UnicodeDecodeError) as error:  # Half a file.
        raise ValueError(f'{path}: not a readable run record ({error}); '
                         f'remove it to run it again') from None
    if record is None:
        return None
    if not isinstance(record, dict):
        raise ValueError(f'{path}: not a run record (a JSON object); remove '
                         f'it to run it again')
    problem = _mismatch(path, record, expected)
    if problem:
        raise ValueError(problem)
    return record


def _take(path: str, run: Callable[[], Record],
          expected: Optional[Dict[str, Any]] = None) -> Optional[Record]:
    r"""The record of :obj:`path`: read back (when it is the run
    :obj:`expected`), or trained here under its lock; :obj:`None` while
    another process trains it."""
    record = _read_checked(path, expected)
    if record is not None:
        return record
    with file_lock(path + '.lock', wait=False) as held:
        if held is None:
            return None
        # Finished by another since the first read:
        record = _read_checked(path, expected)
        if record is None:
            record = run()
            if expected is not None:
                record = {**record, 'run': expected}
            save_json(path, record)
        if held:  # The record is there: a later reader never needs it.
            with contextlib.suppress(OSError):
                os.remove(path + '.lock')
    return record


def run_shared(runs: Sequence[Tuple], poll: float = 10.0) -> List[Record]:
    r"""Returns the record of every run, in order: each read from its
    JSON file, or trained with its callable and written there (when no
    other process is training it), after waiting for the runs of other
    processes.

    Args:
        runs (list): Pairs of a JSON path and a callable that trains the
            run and returns its record, or triples with the run's
            :func:`run_identity` (a file holding another run raises
            :class:`ValueError` naming it; the identity is written into
            the record as :obj:`'run'`).
        poll (float, optional): Seconds between looks at the runs that
            other processes hold. (default: :obj:`10.0`)
    """
    records: Dict[str, Record] = {}
    runs = [tuple(run) + (None, ) * (3 - len(run)) for run in runs]
    count = len({path for path, _, _ in runs})
    while True:
        for path, run, expected in runs:
            if path not in records:
                record = _take(path, run, expected)
                if record is not None:
                    records[path] = record
        if len(records) == count:
            return [records[path] for path, _, _ in runs]
        time.sleep(poll)
