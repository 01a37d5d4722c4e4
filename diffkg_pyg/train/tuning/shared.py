r"""The runs after a search (confirmation runs and final seeds), shared by
the processes that tune one study: each run writes its own JSON file, and
a process trains a run only while it holds that file's lock, so processes
started on the same :obj:`output` split the runs instead of repeating
them. A finished run is read back; a run whose process died is taken over
(the lock goes with the process)."""
import contextlib
import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

from torch_geometric.data import HeteroData

from diffkg_pyg.train.recipe import Recipe
from diffkg_pyg.train.results import FitResult
from diffkg_pyg.train.trainer import Trainer
from diffkg_pyg.utils import file_lock, save_json

__all__ = ['fit_run', 'run_shared']

Record = Dict[str, Any]


def fit_run(recipe_class: Type[Recipe], hyperparameters: Dict[str, Any],
            run: Dict[str, Any], data: HeteroData, device,
            test: bool) -> Tuple[Record, FitResult]:
    r"""Trains one run after the search, quietly: a confirmation run
    (:obj:`test=False`) or a final seed; returns its record and fit."""
    trainer = Trainer.from_settings(recipe_class(**hyperparameters), data,
                                    run, device=device,
                                    log=lambda line: None)
    fit = trainer.fit(run['epochs'], run['patience'], test=test)
    return trainer.result_record(fit), fit


def _read(path: str) -> Optional[Record]:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _take(path: str, run: Callable[[], Record]) -> Optional[Record]:
    r"""The record of :obj:`path`: read back, or trained here under its
    lock; :obj:`None` while another process trains it."""
    record = _read(path)
    if record is not None:
        return record
    with file_lock(path + '.lock', wait=False) as held:
        if held is None:
            return None
        record = _read(path)  # Finished by another since the first read.
        if record is None:
            record = run()
            save_json(path, record)
        if held:  # The record is there: a later reader never needs it.
            with contextlib.suppress(OSError):
                os.remove(path + '.lock')
    return record


def run_shared(runs: Sequence[Tuple[str, Callable[[], Record]]],
               poll: float = 10.0) -> List[Record]:
    r"""Returns the record of every run, in order: each read from its
    JSON file, or trained with its callable and written there (when no
    other process is training it), after waiting for the runs of other
    processes.

    Args:
        runs (list): Pairs of a JSON path and a callable that trains the
            run and returns its record.
        poll (float, optional): Seconds between looks at the runs that
            other processes hold. (default: :obj:`10.0`)
    """
    records: Dict[str, Record] = {}
    count = len({path for path, _ in runs})
    while True:
        for path, run in runs:
            if path not in records:
                record = _take(path, run)
                if record is not None:
                    records[path] = record
        if len(records) == count:
            return [records[path] for path, _ in runs]
        time.sleep(poll)
