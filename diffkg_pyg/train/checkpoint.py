r"""Checkpoint files: atomic writes, random-number-generator states and
dataset fingerprints, so that a resumed run continues exactly where the
interrupted one stopped."""
import hashlib
import json
import os.path as osp
import pickle
import random
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from torch_geometric.data import HeteroData

from diffkg_pyg.data.graph import KG, USER_ITEM
from diffkg_pyg.files import atomic_write
from diffkg_pyg.utils import first_line, iter_tensors

__all__ = [
    'save_atomic',
    'lift_graph_state',
    'load_checkpoint',
    'rng_state',
    'set_rng_state',
    'fingerprint',
    'check_state_tensors',
    'check_sizes',
]


def save_atomic(obj: Any, path: str) -> None:
    r"""Writes :obj:`obj` with :func:`torch.save` atomically (see
    :func:`~diffkg_pyg.files.atomic_write`): :obj:`path` always holds either
    the previous or the new complete file."""
    atomic_write(path, lambda temporary: torch.save(obj, temporary))


def load_checkpoint(path: str,
                    map_location: Optional[torch.device] = None) -> Dict:
    r"""Loads a file written by :func:`save_atomic` (tensors, numbers,
    strings and containers only: :obj:`weights_only` loading); a missing,
    truncated or foreign file raises one error naming :obj:`path`."""
    if osp.isdir(path):
        raise IsADirectoryError(f'{path}: is a folder, not a checkpoint '
                                f'file')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path}: no such checkpoint file')
    try:
        saved = torch.load(path, map_location=map_location,
                           weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, OSError,
            ValueError, TypeError, AttributeError, IndexError,
            UnicodeDecodeError) as error:
        raise ValueError(f'{path}: not a readable checkpoint (truncated or '
                         f'not written by this package: '
                         f'{first_line(error)})') from None
    if not isinstance(saved, dict):
        raise ValueError(f'{path}: not a checkpoint of this package (it '
                         f'holds a {type(saved).__name__}, not a dict)')
    return saved


def check_sizes(sizes: Any, where: str) -> Dict[str, int]:
    r"""The dataset sizes a saved file records (:obj:`num_users`,
    :obj:`num_items`, :obj:`num_entities`, :obj:`num_relations`), checked:
    non-negative ints, at least one user and item, at least as many
    entities as items."""
    names = ('num_users', 'num_items', 'num_entities', 'num_relations')
    if not isinstance(sizes, dict) or sorted(sizes) != sorted(names):
        raise ValueError(f'{where}: the sizes must name {", ".join(names)} '
                         f'(got {sizes!r})')
    for name in names:
        value = sizes[name]
        if not isinstance(value, int) or isinstance(value, bool) or \
                value < 0 or value >= 2**31:
            raise ValueError(f'{where}: {name} must be an int in [0, 2^31) '
                             f'(got {value!r})')
    if sizes['num_users'] < 1 or sizes['num_items'] < 1 or \
            sizes['num_entities'] < sizes['num_items']:
        raise ValueError(f'{where}: sizes {sizes} are not those of a '
                         f'dataset (users and items >= 1, entities >= '
                         f'items)')
    return sizes


def check_state_tensors(state: Any, bound: Optional[int],
                        where: str) -> None:
    r"""Checks every tensor of a saved state (nested in dicts, lists and
    tuples) before any kernel reads it: floating tensors finite, and with
    :obj:`bound`, integer tensors (indices: KGs, pairs, clusters) in
    :obj:`[0, bound]`, where :obj:`bound` counts every node of the graph
    (users, entities and the padding row some models keep), so that no
    saved file can drive an index out of its table; raises
    :class:`ValueError` naming the entry."""
    for name, value in iter_tensors(state):
        if value.is_floating_point() or value.is_complex():
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f'{where}: {name} holds NaN or infinite '
                                 f'values')
        elif bound is not None and value.dtype != torch.bool and \
                value.numel():
            low, high = int(value.min()), int(value.max())
            if low < 0 or high > bound:
                raise ValueError(
                    f'{where}: {name} holds the index '
                    f'{low if low < 0 else high}, outside 0..{bound} (the '
                    f'nodes of the graph it was saved with); the file is '
                    f'corrupted or not of these sizes')


def lift_graph_state(model_state: Any, recipe_state: Any
                     ) -> Tuple[Any, Any]:
    r"""A model's and its recipe's saved states as this version reads
    them: files written before DiffKG became stateless kept its sampled
    and denoised KGs in the model's extra state (:obj:`_extra_state`);
    they are the recipe's state now (the same tensors, moved)."""
    extra = model_state.get('_extra_state') \
        if isinstance(model_state, dict) else None
    if not isinstance(extra, dict) or 'sampled_kg' not in extra or \
            not isinstance(recipe_state or {}, dict):
        return model_state, recipe_state
    extra = dict(extra)
    kgs = {key: extra.pop(key) for key in ('sampled_kg', 'denoised_kg')
           if key in extra}
    return {**model_state, '_extra_state': extra}, \
        {**kgs, **(recipe_state or {})}


def rng_state(generator: Optional[torch.Generator] = None) -> Dict:
    r"""The states of torch's, NumPy's and Python's global generators (and
    of :obj:`generator`), as tensors and plain values."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        'torch': torch.get_rng_state(),
        'numpy': [name, torch.from_numpy(keys.astype(np.int64)), position,
                  has_gauss, cached],
        'python': _to_lists(random.getstate()),
    }
    # CUDA's generators only where this process uses CUDA (reading them
    # would start CUDA, on every GPU, in a CPU run):
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state['generator'] = generator.get_state()
        state['generator_device'] = generator.device.type
    return state


def set_rng_state(state: Dict,
                  generator: Optional[torch.Generator] = None) -> None:
    r"""Restores what :func:`rng_state` returned (a :class:`ValueError`
    when :obj:`generator` is of another device type than the saved
    one)."""
    if generator is not None:
        # A generator's state is of its device type (CUDA's and the CPU's
        # differ in size): checked before any generator is touched.
        saved = state.get('generator_device', generator.device.type)
        if saved != generator.device.type:
            raise ValueError(f'the checkpoint was written by a run on '
                             f'{saved}, and this run is on '
                             f'{generator.device.type}: resume it with '
                             f'--device {saved} (its random state is of '
                             f'that device)')
    torch.set_rng_state(state['torch'])
    name, keys, position, has_gauss, cached = state['numpy']
    np.random.set_state((name, keys.numpy().astype(np.uint32), position,
                         has_gauss, cached))
    random.setstate(_to_tuples(state['python']))
    if 'cuda' in state and torch.cuda.is_available():
        # A checkpoint of a machine with more GPUs sets those there are.
        torch.cuda.set_rng_state_all(
            state['cuda'][:torch.cuda.device_count()])
    if generator is not None:
        generator.set_state(state['generator'])


def _to_lists(value):
    if isinstance(value, tuple):
        return [_to_lists(v) for v in value]
    return value


def _to_tuples(value):
    if isinstance(value, list):
        return tuple(_to_tuples(v) for v in value)
    return value


def fingerprint(data: HeteroData) -> str:
    r"""A SHA-256 over the sizes, the interactions (train, validation,
    test), the train interactions' order (:obj:`edge_time`, T-DiffRec's
    weights; if any), the knowledge graph and the item features (if any) of
    a dataset graph."""
    digest = hashlib.sha256()
    store, kg = data[USER_ITEM], data[KG]
    sizes = [data[t].num_nodes for t in ('user', 'item', 'entity')]
    digest.update(repr(sizes + [int(kg.num_relations)]).encode())
    tensors = [store.edge_index, store.val_edge_index,
               store.test_edge_index, kg.edge_index, kg.edge_type]
    if 'edge_time' in store:  # The interactions' order (T-DiffRec).
        tensors.append(store.edge_time)
    if 'x' in data['item']:  # Item features (L-DiffRec's clusters).
        tensors.append(data['item'].x)
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    if getattr(data, 'preparation', None) is not None:
        # Filters and splits (absent for the defaults, whose fingerprints
        # are as before): how the data came to be.
        digest.update(json.dumps([data.preparation, data.split],
                                 sort_keys=True).encode())
    return digest.hexdigest()
