r"""Checks a run makes before it trains (and the one line a failure it
could not foresee is reported as), so that nothing is lost at its end:
the device exists, the thread count is sane, numbers are finite, and every
output (a result file, a saved model, a checkpoint folder) can be written,
with room for a checkpoint; a checkpoint folder is locked for one run, and
the temporaries a killed process left in it are removed."""
import contextlib
import errno
import glob
import math
import os
import os.path as osp
import shutil
from typing import Any, Callable, Iterator, Optional

import torch

from diffkg_pyg.files import file_lock
from diffkg_pyg.train.hyperparameters import MAX_SEED
from diffkg_pyg.utils import first_line

__all__ = ['check_device', 'check_threads', 'finite_float', 'probe_file',
           'probe_folder', 'lock_folder', 'remove_orphans', 'max_threads',
           'describe', 'expected_runtime_error',
           'check_run_flags', 'one_line_warnings']



def max_threads() -> int:
    r"""The most CPU threads a run may ask for: 4 per core, at least
    256."""
    return max(256, 4 * (os.cpu_count() or 1))


def check_device(text: str) -> torch.device:
    r"""The torch device :obj:`text` names, where this process can use it;
    otherwise one :class:`ValueError` saying why (an unknown name, a CUDA
    device on a build or machine without CUDA, an index beyond the
    devices)."""
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f'--device {text}: not a torch device '
                         f'({first_line(error)}); e.g. cpu, cuda, '
                         f'cuda:1') from None
    if device.type == 'cuda':
        if not torch.backends.cuda.is_built():
            raise ValueError(f'--device {text}: this torch build has no '
                             f'CUDA (torch {torch.__version__}); install a '
                             f'CUDA build of torch, or use --device cpu')
        if not torch.cuda.is_available():
            raise ValueError(f'--device {text}: no CUDA GPU is visible to '
                             f'this process (CUDA_VISIBLE_DEVICES, driver); '
                             f'use --device cpu')
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f'--device {text}: there are {count} CUDA '
                             f'device(s), cuda:0..cuda:{count - 1}')
    elif device.type == 'mps' and not torch.backends.mps.is_available():
        raise ValueError(f'--device {text}: MPS is not available here; use '
                         f'--device cpu')
    elif device.type not in ('cpu', 'cuda', 'mps'):
        raise ValueError(f'--device {text}: the package runs on cpu, cuda '
                         f'or mps devices')
    return device


def check_threads(threads: Optional[int]) -> None:
    r"""Refuses a thread count below 1 or beyond :func:`max_threads`."""
    if threads is None:
        return
    if threads < 1 or threads > max_threads():
        raise ValueError(f'--threads must be in [1, {max_threads()}] (got '
                         f'{threads}; this machine has {os.cpu_count()} '
                         f'CPUs)')


def finite_float(text: str) -> float:
    r"""An :mod:`argparse` type: a finite float (NaN and infinities are
    refused)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f'not a finite number: {text!r}')
    return value


# What argparse names it in "invalid finite number value: 'nan'":
finite_float.__name__ = 'finite number'


def _integer_from(low: int, name: str) -> Callable[[str], int]:
    # An argparse type: an integer >= low, named `name` in its errors
    # ("invalid positive integer value: '0'").
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise ValueError(f'under {low}: {text!r}')
        return value

    parse.__name__ = name
    return parse


#: :mod:`argparse` types: a non-negative and a positive integer.
count = _integer_from(0, 'non-negative integer')
positive = _integer_from(1, 'positive integer')


def probe_file(path: str, flag: str) -> None:
    r"""Checks before a run that :obj:`path` can be written at its end: not
    a folder, its folder creatable and writable (a file is created there
    and removed); raises :class:`OSError` naming :obj:`flag` and the
    path."""
    if osp.isdir(path):
        raise IsADirectoryError(f'{flag} {path}: is a folder; give a file '
                                f'path')
    folder = osp.dirname(osp.abspath(path))
    _probe(folder, flag, path)


def probe_folder(path: str, flag: str, need_bytes: int = 0) -> None:
    r"""Checks that the folder :obj:`path` exists or can be created, is
    writable and has :obj:`need_bytes` free (for a checkpoint); raises
    :class:`OSError` naming :obj:`flag` and the path."""
    if osp.exists(path) and not osp.isdir(path):
        raise NotADirectoryError(f'{flag} {path}: is a file, not a folder')
    _probe(path, flag, path)
    free = shutil.disk_usage(path).free
    if free < need_bytes:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC),
                      f'{flag} {path} ({free / 2**20:.0f} MiB free, a '
                      f'checkpoint needs about {need_bytes / 2**20:.0f} '
                      f'MiB)')


def _probe(folder: str, flag: str, path: str) -> None:
    parent = osp.abspath(folder)
    while parent and not osp.exists(parent):
        parent = osp.dirname(parent)
    if osp.exists(parent) and not osp.isdir(parent):
        raise NotADirectoryError(errno.ENOTDIR, f'{flag} {path}: cannot be '
                                 f'written ({parent} is a file, not a '
                                 f'folder)')
    try:
        os.makedirs(folder, exist_ok=True)
        probe = osp.join(folder, f'.diffkg-probe-{os.getpid()}')
        with open(probe, 'w') as f:
            f.write('probe')
        os.remove(probe)
    except OSError as error:
        raise type(error)(error.errno, f'{flag} {path}: cannot be written '
                          f'({error.strerror})') from None


def remove_orphans(folder: str) -> int:
    r"""Removes the temporaries (:obj:`NAME.tmpPID`) that processes which
    no longer run left in :obj:`folder`; returns how many."""
    removed = 0
    for path in glob.glob(osp.join(folder, '*.tmp*')):
        suffix = path.rsplit('.tmp', 1)[-1]
        if not suffix.isdigit() or _alive(int(suffix)):
            continue
        with contextlib.suppress(OSError):
            os.remove(path)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def lock_folder(folder: str) -> Iterator[None]:
    r"""Holds :obj:`folder/.lock` for one run: a second run writing
    checkpoints to the same folder raises :class:`ValueError` instead of
    overwriting the first run's files."""
    with file_lock(osp.join(folder, '.lock'), wait=False) as held:
        if held is None:
            raise ValueError(f'{folder}: another run is writing its '
                             f'checkpoints here (it holds {folder}/.lock); '
                             f'give each run its own --checkpoint-dir')
        yield


def expected_runtime_error(error: RuntimeError) -> bool:
    r"""Whether a :class:`RuntimeError` of torch is a failure the user's
    input or machine causes (memory, devices, disk), not a bug."""
    text = str(error).lower()
    return any(key in text for key in ('allocate', 'out of memory', 'cuda',
                                        'no space left'))


def describe(error: BaseException) -> str:
    r"""One line for an expected failure: an :class:`OSError` with its
    path and reason (a full disk said so), a memory failure with what to
    do, anything else its message's first line."""
    text, first = str(error).strip(), first_line(error)
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        where = error.filename or first
        return f'{where}: no space left on device; free some, or write ' \
            f'elsewhere'
    if isinstance(error, OSError) and error.filename and \
            str(error.filename) not in text:
        return f'{error.filename}: {error.strerror or first}'
    if isinstance(error, OSError) and error.strerror and \
            error.filename is None:
        return error.strerror  # Without its "[Errno N]" prefix.
    if isinstance(error, MemoryError) or 'allocate' in text:
        return (f'out of memory ({first}); try a smaller --batch-size or '
                f'--eval-batch-size, or a machine with more memory')
    if isinstance(error, OverflowError):
        return f'a number is too large ({first}); seeds and counts must ' \
            f'be below 2^63'
    return first


def check_run_flags(args: Any) -> None:
    r"""The flags every run checks before it loads or trains anything:
    threads, seeds, timeouts, the device (:obj:`args.device` becomes a
    :class:`torch.device`) and the outputs; :obj:`args` is the command
    line's namespace."""
    check_threads(args.threads)
    for key in ('split_seed', 'kg_ablation_seed'):
        value = getattr(args, key)
        if not 0 <= value <= MAX_SEED:
            raise ValueError(f'--{key.replace("_", "-")} must be in [0, '
                             f'2^63) (got {value})')
    if not 0.0 <= args.val_ratio < 1.0:
        raise ValueError(f'--val-ratio must be in [0, 1) (got '
                         f'{args.val_ratio})')
    for key in ('heartbeat', 'dist_timeout'):
        value = getattr(args, key, None)
        if value is not None and value <= 0:
            raise ValueError(f'--{key.replace("_", "-")} must be > 0 (got '
                             f'{value})')
    args.device = check_device(args.device)
    # Probed now, not found unwritable after the training:
    for flag in ('output', 'save_model'):
        path = getattr(args, flag, None)
        if path and not hasattr(args, 'trials'):
            probe_file(path, f'--{flag.replace("_", "-")}')
    if getattr(args, 'log_dir', None):
        from diffkg_pyg.train.tensorboard import check_tensorboard
        try:
            check_tensorboard()
        except ImportError as error:
            raise ValueError(str(error)) from None
        probe_folder(args.log_dir, '--log-dir')


def one_line_warnings(prog: str) -> None:
    r"""Shows warnings as one line each, :obj:`prog: warning: ...` (not
    with the source line that raised them): what the command line does."""
    import warnings
    warnings.formatwarning = lambda message, category, *_: \
        f'{prog}: warning: {message}\n'
