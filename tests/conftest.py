import os
import os.path as osp

import pytest

#: Where the tests marked ``cuda`` run: a CUDA device unless
#: ``DIFFKG_TEST_DEVICE`` names another (``cpu`` dry-runs them).
TEST_DEVICE = os.environ.get('DIFFKG_TEST_DEVICE', 'cuda')


def pytest_collection_modifyitems(config, items):
    if not TEST_DEVICE.startswith('cuda'):
        return
    import torch
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='no CUDA GPU here (run them on one with '
                            'benchmarks/gpu_check.sh)')
    for item in items:
        if item.get_closest_marker('cuda') is not None:
            item.add_marker(skip)

SHARED_DATA = osp.abspath(
    osp.join(osp.dirname(__file__), '..', '..', 'shared', 'data'))


def shared_dataset(name: str) -> str:
    r"""Returns the folder of a dataset in `../shared/data`, skipping the
    test when it is absent."""
    path = osp.join(SHARED_DATA, name)
    if not osp.isdir(path):
        pytest.skip(f'{path} is absent (the real datasets live beside the '
                    f'checkout in ../shared/data)')
    return path


def write(path, text: str) -> str:
    with open(path, 'w') as f:
        f.write(text)
    return str(path)


@pytest.fixture
def kgat_folder(tmp_path):
    r"""A tiny dataset in the KGAT layout: 3 users, 4 items, 6 entities."""
    folder = tmp_path / 'tiny'
    folder.mkdir()
    write(folder / 'train.txt', '0 0 1 2\n1 1 2 3\n2 0 3\n')
    write(folder / 'test.txt', '0 3\n1 0\n2 1 2\n')
    write(folder / 'kg_final.txt', '0 0 4\n1 0 4\n2 1 5\n3 1 5\n0 0 4\n')
    return folder


def write_diffrec_folder(folder, num_users: int = 12, num_items: int = 15,
                         seed: int = 0):
    r"""Writes a random dataset in DiffRec's layout (every user with train,
    validation and test items, no pair in two lists) into :obj:`folder`."""
    import numpy as np

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    parts = {'train': [], 'valid': [], 'test': []}
    for user in range(num_users):
        items = rng.permutation(num_items)[:rng.integers(5, 10)]
        parts['test'] += [[user, int(i)] for i in items[:1]]
        parts['valid'] += [[user, int(i)] for i in items[1:2]]
        parts['train'] += [[user, int(i)] for i in items[2:]]
    for name, pairs in parts.items():
        np.save(folder / f'{name}_list.npy', np.array(pairs, dtype=np.int64))
    return folder


@pytest.fixture
def diffrec_folder(tmp_path):
    r"""A tiny dataset in DiffRec's layout: 12 users, at most 15 items."""
    return write_diffrec_folder(tmp_path / 'tiny-diffrec')


def write_kgat_folder(folder, num_users: int = 24, num_items: int = 30,
                      num_entities: int = 45, seed: int = 0):
    r"""Writes a random dataset in the KGAT layout (every user with 8 to 11
    items, 2 of them for test; 3 relations) into :obj:`folder`."""
    import numpy as np

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    train, test = [], []
    for user in range(num_users):
        items = rng.permutation(num_items)[:rng.integers(8, 12)]
        test.append(f'{user} ' + ' '.join(map(str, items[:2])))
        train.append(f'{user} ' + ' '.join(map(str, items[2:])))
    write(folder / 'train.txt', '\n'.join(train) + '\n')
    write(folder / 'test.txt', '\n'.join(test) + '\n')
    heads = rng.integers(0, num_entities, 3 * num_entities)
    relations = rng.integers(0, 3, heads.size)
    tails = rng.integers(0, num_entities, heads.size)
    write(folder / 'kg_final.txt', ''.join(
        f'{h} {r} {t}\n' for h, r, t in zip(heads, relations, tails)))
    return folder


def flat_state(state, prefix: str = ''):
    r"""A state dict with its nested entries (a model's extra state: lists
    and dicts of tensors) flattened to dotted keys, tensors cloned."""
    import torch
    out = {}
    items = state.items() if isinstance(state, dict) else enumerate(state)
    for key, value in items:
        if isinstance(value, (dict, list, tuple)):
            out.update(flat_state(value, f'{prefix}{key}.'))
        else:  # (Plain values, such as DiffKG's chosen noise columns, as
            # tensors: states compare as tensors.)
            out[f'{prefix}{key}'] = torch.as_tensor(value).clone()
    return out
