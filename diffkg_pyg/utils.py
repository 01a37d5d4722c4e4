r"""Helpers every layer of the package uses: CSR grouping of edge lists
(on PyG's :mod:`torch_geometric.index` utilities), atomic file writes and
a lock that serialises processes working on one file."""
import contextlib
import errno
import json
import os
import os.path as osp
import shutil
import sys
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.index import index2ptr, ptr2index

__all__ = ['first_line', 'iter_tensors', 'to_csr', 'rows_of', 'gather_rows',
           'atomic_write', 'save_json', 'file_lock', 'peak_rss_mb',
           'peak_gpu_mb',
           'retain_freed_memory', 'to_device']


def to_csr(edge_index: Tensor, num_rows: int) -> Tuple[Tensor, Tensor]:
    r"""Returns the row pointer :obj:`[num_rows + 1]` and the columns
    (sorted by row, stable) of :obj:`edge_index` :obj:`[2, num_edges]`."""
    row, col = edge_index
    perm = torch.argsort(row, stable=True)
    return index2ptr(row[perm], num_rows), col[perm]


def rows_of(ptr: Tensor, num_entries: int) -> Tensor:
    r"""Returns the row of every entry of a CSR-grouped array given its row
    pointer :obj:`ptr` :obj:`[num_rows + 1]` (:obj:`num_entries` is
    :obj:`ptr[-1]`, passed so that no host sync is needed)."""
    return ptr2index(ptr, output_size=num_entries)


def gather_rows(ptr: Tensor, col: Tensor,
                rows: Tensor) -> Tuple[Tensor, Tensor]:
    r"""Gathers the CSR rows :obj:`rows` :obj:`[batch_size]` without a
    Python loop.

    Returns:
        :obj:`(local_row, col)`: for every gathered entry, the position of
        its row in :obj:`rows` and its column.
    """
    start, count = ptr[rows], ptr[rows + 1] - ptr[rows]
    local_row = torch.repeat_interleave(
        torch.arange(rows.numel(), device=rows.device), count)
    offset = torch.cumsum(count, dim=0) - count
    position = (torch.arange(local_row.numel(), device=rows.device) -
                offset[local_row] + start[local_row])
    return local_row, col[position]


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    r"""Calls :obj:`write(temporary_path)` for a temporary file beside
    :obj:`path`, flushes it to disk and renames it into place, so that
    :obj:`path` always holds either the previous or the new complete file
    (a killed process or a full disk never leaves half a file). The folder
    is created when missing.

    Args:
        path (str): The file to write.
        write (callable): Writes the content to the path it is given.
    """
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = f'{path}.tmp{os.getpid()}'
    try:
        try:
            write(temporary)
        except OSError as error:  # The path it failed on, said.
            if error.filename is None:
                raise OSError(error.errno, error.strerror or str(error),
                              path) from None
            raise
        except RuntimeError as error:
            # torch.save on a full disk: "unexpected pos ...".
            free = shutil.disk_usage(directory).free
            code = errno.ENOSPC if free < 2**24 else errno.EIO
            raise OSError(code, f'{os.strerror(code)} (writing failed: '
                          f'{str(error).splitlines()[0]})', path) from None
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    finally:
        if osp.exists(temporary):
            os.remove(temporary)
    if hasattr(os, 'O_DIRECTORY'):  # Make the rename itself durable.
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_json(path: str, obj: Any) -> None:
    r"""Writes :obj:`obj` as indented JSON to :obj:`path`, atomically (see
    :func:`atomic_write`)."""
    def write(temporary: str) -> None:
        with open(temporary, 'w') as f:
            json.dump(obj, f, indent=2)
    atomic_write(path, write)


@contextlib.contextmanager
def file_lock(path: str, wait: bool = True) -> Iterator[Optional[bool]]:
    r"""Holds an exclusive advisory lock on :obj:`path` (created when
    missing) for the duration of the :obj:`with` block. Processes that
    build the same cache use it so that one builds it and the others read
    it, instead of each removing or overwriting what another is about to
    read; processes that share a study's runs use it (with
    :obj:`wait=False`) so that each run is trained by one of them. The
    lock goes with the process: one that dies releases it.

    Yields :obj:`True` when the lock is held, and :obj:`False` (running the
    block unlocked) where the platform has no :obj:`fcntl` or the lock file
    cannot be created, e.g. in a read-only folder, where nothing can be
    written to race on. While another process holds the lock, it waits,
    or with :obj:`wait=False` yields :obj:`None` at once (the block must
    then leave what the lock guards alone).

    Args:
        path (str): The lock file.
        wait (bool, optional): Wait for another holder to release the
            lock. (default: :obj:`True`)
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover (Windows)
        yield False
        return
    try:
        os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            held = None
        else:
            held = True
        yield held
    finally:
        os.close(fd)  # Closing the descriptor releases the lock.


def peak_rss_mb() -> Optional[float]:
    r"""The process's peak resident memory in MiB (:obj:`None` where the
    platform does not say)."""
    try:
        import resource
    except ImportError:  # pragma: no cover (Windows)
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Kilobytes on Linux, bytes on macOS:
    return peak / (2**20 if sys.platform == 'darwin' else 2**10)


def peak_gpu_mb(device: torch.device) -> Dict[str, float]:
    r"""On a CUDA :obj:`device`, :obj:`{'peak_gpu_mb': ...}`: the most
    memory torch's allocator held for tensors there, in MiB (since the
    process started or the last :func:`torch.cuda.reset_peak_memory_stats`);
    on other devices :obj:`{}`."""
    device = torch.device(device)
    if device.type != 'cuda':
        return {}
    return {'peak_gpu_mb': torch.cuda.max_memory_allocated(device) / 2**20}


def retain_freed_memory(device: Optional[torch.device] = None) -> bool:
    r"""Makes the C allocator keep the memory the process frees for its
    next allocations instead of returning it to the operating system
    (glibc's :obj:`mallopt`: no :obj:`mmap` for large blocks, no trimming
    of the heap). A training step frees and allocates the same large arrays
    every step (DiffKG's InfoNCE keeps a :obj:`[num_users, batch_size]`
    array, 470 MB on Alibaba-iFashion); returned to the system, each page
    of them is faulted in again at the next step: on this project's 2-core
    CPU, DiffKG's kept reference step on Alibaba-iFashion took 3.19 s
    without it and 2.54 s with it (``benchmarks/notebook.md``, section 3).
    The process's resident memory then stays near its peak instead of
    shrinking between steps. The command line calls it for its runs (once
    the device is known); call it in your own training process for the
    same effect (or preload jemalloc or TCMalloc, as PyTorch's CPU
    performance guide advises). A run on another :obj:`device` than the
    CPU changes nothing (its large arrays live in the device's memory).
    Returns whether it applied (glibc only; elsewhere nothing changes)."""
    if device is not None and torch.device(device).type != 'cpu':
        return False
    import ctypes
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover (not glibc)
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_mmap_max, 0)) and \
        bool(mallopt(m_trim_threshold, 2**31 - 1))


def to_device(obj: Any, device: torch.device, copy: bool = False) -> Any:
    r""":obj:`obj` with its tensors (in lists, tuples and dicts) detached
    and moved to :obj:`device` (copied with :obj:`copy`)."""
    if isinstance(obj, Tensor):
        return obj.detach().to(device, copy=copy)
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device, copy) for v in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device, copy) for k, v in obj.items()}
    return obj


def first_line(error: BaseException) -> str:
    r"""The first line of :obj:`error`'s message (its type's name when it
    has none): what a one-line report of it quotes."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def iter_tensors(obj: Any, name: str = '') -> Iterator[Tuple[str, Tensor]]:
    r"""Every tensor in :obj:`obj` (nested in dicts, lists and tuples) with
    its path (:obj:`'recipe.slots[0]'`)."""
    if isinstance(obj, Tensor):
        yield name, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from iter_tensors(value, f'{name}.{key}' if name else
                                    str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from iter_tensors(value, f'{name}[{i}]')
