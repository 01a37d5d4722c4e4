r"""Training curves in TensorBoard (``train --log-dir``): every epoch's
record written as scalars through :mod:`torch.utils.tensorboard` (the
``tensorboard`` extra), for ``tensorboard --logdir DIR``."""
from typing import Any, Dict, Optional

__all__ = ['TensorBoardWriter', 'check_tensorboard']


def check_tensorboard() -> None:
    r"""Raises :class:`ImportError` with the install line when the
    ``tensorboard`` package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ImportError(
            "--log-dir writes TensorBoard event files, which needs the "
            "tensorboard package: pip install 'diffkg-pyg[tensorboard]' "
            "(or pip install tensorboard)") from None


class TensorBoardWriter:
    r"""Writes each epoch's record (a :meth:`Trainer.fit` history entry) as
    scalars at step :obj:`epoch`: the loss terms and what the recipe logs
    under ``train/``, the validation metrics under ``valid/``, the phase
    times (``*_seconds``) under ``seconds/``; :meth:`close` adds the
    best epoch's test metrics under ``test/`` (at the best epoch's step).

    A resumed run continues the same curves: the first epoch written purges
    whatever a run killed after its checkpoint had written from that epoch
    on (:obj:`purge_step`), so no epoch appears twice.

    Args:
        log_dir (str): The folder of the event files.
    """
    def __init__(self, log_dir: str) -> None:
        check_tensorboard()
        self.log_dir = log_dir
        self._writer = None

    def __call__(self, record: Dict[str, Any]) -> None:
        epoch = int(record['epoch'])
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(self.log_dir, purge_step=epoch)
        for key, value in record.items():
            if key == 'epoch' or not isinstance(value, (int, float)):
                continue
            if key.startswith('valid_'):
                tag = 'valid/' + key[len('valid_'):]
            elif key.endswith('_seconds'):
                tag = 'seconds/' + key[:-len('_seconds')]
            else:
                tag = 'train/' + key
            self._writer.add_scalar(tag, float(value), epoch)
        self._writer.flush()

    def close(self, test: Optional[Dict[str, float]] = None,
              best_epoch: int = 0) -> None:
        r"""Writes :obj:`test` (at :obj:`best_epoch`) and closes the
        files."""
        if self._writer is None:
            return
        for name, value in (test or {}).items():
            self._writer.add_scalar(f'test/{name}', float(value), best_epoch)
        self._writer.close()
