r"""Process settings and measurements: keeping freed memory for reuse
(glibc's :obj:`mallopt`), peak resident and GPU memory."""
import sys
from typing import Dict, Optional

import torch

__all__ = ['peak_rss_mb', 'peak_gpu_mb', 'retain_freed_memory']


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
