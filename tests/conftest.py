import os.path as osp

import pytest

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
