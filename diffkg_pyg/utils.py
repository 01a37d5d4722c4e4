r"""Small helpers every layer of the package uses: moving nested
structures of tensors between devices, walking them, and the first line
of an error. CSR grouping is :mod:`diffkg_pyg.csr`, files and locks
:mod:`diffkg_pyg.files`, process settings :mod:`diffkg_pyg.process`."""
from typing import Any, Iterator, Tuple

import torch
from torch import Tensor

__all__ = ['first_line', 'iter_tensors', 'to_device']


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
