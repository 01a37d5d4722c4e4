r"""Files that appear whole or not at all (atomic writes, JSON) and a lock
that serialises processes working on one file."""
import contextlib
import errno
import json
import os
import os.path as osp
import shutil
from typing import Any, Callable, Iterator, Optional

__all__ = ['atomic_write', 'save_json', 'file_lock']


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
