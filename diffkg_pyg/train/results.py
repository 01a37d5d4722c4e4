r"""What a fit returns and keeps: its result, its resumable state, and the
two ways it stops early."""
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List

__all__ = ['FitResult', 'FitState', 'TrainingInterrupted',
           'NonFiniteLossError']


class TrainingInterrupted(KeyboardInterrupt):
    r"""Training stopped on Ctrl-C after a checkpoint was written to
    :obj:`path`."""
    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class NonFiniteLossError(FloatingPointError):
    r"""A loss term became NaN or infinite."""


@dataclass
class FitResult:
    r"""The outcome of :meth:`Trainer.fit`: the number of epochs run, the
    best epoch (by the validation metric), the wall time, the validation
    metrics of the best epoch, the test metrics of the restored best model,
    and one record per epoch; :obj:`extra` holds the recipe's summary and
    the seconds of every phase, written at the top level by
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
