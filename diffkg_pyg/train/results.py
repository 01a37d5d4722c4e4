r"""What a fit returns and keeps: its result, its resumable state, and the
two ways it stops early."""
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from torch_geometric.data import HeteroData

from diffkg_pyg.version import __version__, package_commit

__all__ = ['FitResult', 'FitState', 'TrainingInterrupted',
           'NonFiniteLossError', 'DivergenceError', 'dataset_record',
           'code_record', 'check_divergence']


class TrainingInterrupted(KeyboardInterrupt):
    r"""Training stopped on Ctrl-C or SIGTERM after a checkpoint was
    written to :obj:`path` (:obj:`None` where none was)."""
    def __init__(self, message: str, path: Optional[str]) -> None:
        super().__init__(message)
        self.path = path


class NonFiniteLossError(FloatingPointError):
    r"""A loss term became NaN or infinite."""


class DivergenceError(NonFiniteLossError):
    r"""A training loss grew by orders of magnitude in one epoch or over
    the run (the divergence guard of :class:`~diffkg_pyg.train.Trainer`)."""


@dataclass
class FitResult:
    r"""The outcome of :meth:`Trainer.fit`: the number of epochs run, the
    best epoch (by the validation metric), the wall time, the validation
    metrics of the best epoch, the test metrics of the restored best model,
    and one record per epoch; :obj:`extra` holds the recipe's summary, the
    seconds of every phase and the test metrics of every user-activity
    bucket (:obj:`test_by_activity`: users grouped by their number of train
    interactions, the coldest first), written at the top level by
    :meth:`to_dict`."""
    epochs_run: int
    best_epoch: int
    seconds: float
    valid: Dict[str, float]
    test: Dict[str, float]
    history: List[Dict[str, float]] = field(default_factory=list)
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict:
        record = asdict(self)
        record.update(record.pop('extra'))
        return record


@dataclass
class FitState:
    r"""The state of a fit after :obj:`epoch` completed epochs: the
    early-stopping bookkeeping, the history and the training seconds so
    far. Checkpoints store it; :meth:`Trainer.fit` continues from it."""
    epoch: int = 0
    best_value: float = -1.0
    best_epoch: int = 0
    best_valid: Dict[str, float] = field(default_factory=dict)
    best_state: Any = None
    history: List[Dict[str, float]] = field(default_factory=list)
    stopped: bool = False
    seconds: float = 0.0


def dataset_record(data: HeteroData, fingerprint: str) -> Dict[str, Any]:
    r"""What a result records of its dataset, so that a reader on another
    machine can tell what ran: its name (:obj:`data.name`, the folder's
    name for a dataset folder), its layout (:obj:`data.layout`:
    :obj:`'kgat'`, :obj:`'authors'`, :obj:`'diffrec'` or
    :obj:`'synthetic'`, as :func:`~diffkg_pyg.data.load_dataset` sets it;
    :obj:`None` for a graph built otherwise) and the SHA-256 fingerprint of
    its content (sizes, train, validation and test pairs, knowledge graph:
    :func:`~diffkg_pyg.train.checkpoint.fingerprint`), how a folder of
    RecBole or CSV files was split (:obj:`data.split`, where read by
    :func:`~diffkg_pyg.data.read_tabular_folder`), the filters and split
    asked for and what they removed (:obj:`data.preparation`, see
    :mod:`~diffkg_pyg.data.prepare`), and the KG ablation where there is
    one (:func:`~diffkg_pyg.data.ablate_kg`)."""
    out = {'name': getattr(data, 'name', None),
           'layout': getattr(data, 'layout', None),
           'fingerprint': fingerprint}
    if getattr(data, 'split', None) is not None:
        out['split'] = data.split
    if getattr(data, 'preparation', None) is not None:
        out['preparation'] = data.preparation
    if getattr(data, 'kg_ablation', None) is not None:
        out['kg_ablation'] = data.kg_ablation
        out['kg_ablation_seed'] = data.kg_ablation_seed
    return out


def code_record() -> Dict[str, Any]:
    r"""The package version and, in a git checkout, its commit (with
    ``+dirty`` when the package differs from it)."""
    return {'version': __version__, 'commit': package_commit()}


def phase_totals(history: List[Dict[str, Any]]) -> Dict[str, float]:
    r"""The seconds of every phase (each :obj:`*_seconds` key of the
    epochs' records), summed over :obj:`history`."""
    out: Dict[str, float] = {}
    for record in history:
        for key, value in record.items():
            if key.endswith('_seconds'):
                phase = key.removesuffix('_seconds')
                out[phase] = out.get(phase, 0.0) + value
    return out


def check_divergence(history: List[Dict[str, Any]], record: Dict[str, Any],
                     epoch: int, totals: Sequence[str],
                     factor: Optional[float]) -> None:
    r"""The divergence guard of :class:`~diffkg_pyg.train.Trainer`: raises
    :class:`DivergenceError` where a total loss of :obj:`totals` in the
    epoch's :obj:`record` is over :obj:`factor` times the previous epoch's
    or :obj:`factor` squared times the first epoch's (of :obj:`history`,
    so a resumed run compares with the same references; :obj:`None`: no
    guard)."""
    if factor is None or not history:
        return
    for name in totals:
        for ago, allowed, what in ((history[-1], factor,
                                    'the previous epoch'),
                                   (history[0], factor ** 2,
                                    'the first epoch')):
            if name not in record or name not in ago:
                continue
            if abs(record[name]) > allowed * max(abs(ago[name]), 1e-3):
                raise DivergenceError(
                    f'the training loss {name!r} diverged in epoch '
                    f'{epoch}: {record[name]:.4g}, over {allowed:g} '
                    f"times {what}'s {ago[name]:.4g}; training stopped "
                    f'(checkpoints of earlier epochs are kept; try a '
                    f'lower learning rate, or turn the guard off with '
                    f'--no-divergence-guard)')
