import os
import os.path as osp
import pickle
import shutil
import threading

import pytest
import scipy.sparse as sp
import torch

from diffkg_pyg.data import (
    KG,
    USER_ITEM,
    AlibabaIFashion,
    DataError,
    KGRecDataset,
    LastFM,
    MissingFileError,
    detect_format,
    load_dataset,
    statistics,
)
from diffkg_pyg.data import datasets as datasets_module
from diffkg_pyg.data import io as io_module
from diffkg_pyg.files import file_lock
from tests.conftest import shared_dataset, write


def test_kgat_folder_dataset(kgat_folder, tmp_path, capsys):
    dataset = KGRecDataset(str(kgat_folder), val_ratio=0.0)
    assert 'users' in capsys.readouterr().out  # The statistics table.
    assert len(dataset) == 1
    data = dataset[0]
    assert statistics(data)['num_train'] == 8
    assert osp.isdir(kgat_folder / 'processed')
    assert repr(dataset) == 'KGRecDataset(tiny)'


def test_processed_cache_reused_and_rebuilt(kgat_folder, tmp_path,
                                            monkeypatch):
    cache = str(tmp_path / 'cache')
    KGRecDataset(str(kgat_folder), processed_dir=cache, log=False)
    calls = []
    original = KGRecDataset.process
    monkeypatch.setattr(KGRecDataset, 'process',
                        lambda self: calls.append(1) or original(self))
    KGRecDataset(str(kgat_folder), processed_dir=cache, log=False)
    assert calls == []  # Reused.
    write(kgat_folder / 'test.txt', '0 3\n1 0\n2 1\n')
    data = KGRecDataset(str(kgat_folder), processed_dir=cache, log=False)[0]
    assert calls == [1]  # Rebuilt after the raw change.
    assert data[USER_ITEM].test_edge_index.size(1) == 3
    # One graph (no temporary left) + PyG's two records + the lock file:
    names = os.listdir(cache)
    assert len(names) == 4 and '.lock' in names
    assert len([name for name in names if name.startswith('data_')]) == 1
    assert not any(name.endswith('.tmp') for name in os.listdir(cache))
    KGRecDataset(str(kgat_folder), val_ratio=0.2, processed_dir=cache,
                 log=False)
    assert calls == [1, 1]  # Other split settings: another cache entry.


def test_concurrent_opens_take_turns(kgat_folder, tmp_path, monkeypatch):
    # While another process holds the folder's lock (here: another open
    # file description, which `flock` treats alike), a second open waits
    # instead of building, or removing, the cache under it.
    cache = str(tmp_path / 'cache')
    processing = threading.Event()
    original = KGRecDataset.process
    monkeypatch.setattr(KGRecDataset, 'process',
                        lambda self: processing.set() or original(self))
    opened = []
    with file_lock(osp.join(cache, '.lock')) as locked:
        assert locked
        thread = threading.Thread(target=lambda: opened.append(KGRecDataset(
            str(kgat_folder), processed_dir=cache, log=False)))
        thread.start()
        assert not processing.wait(timeout=1.5)
        assert thread.is_alive() and not opened
    thread.join(timeout=60)
    assert processing.is_set() and len(opened) == 1
    assert opened[0][0][USER_ITEM].test_edge_index.size(1) > 0


def test_file_lock_without_a_writable_folder(tmp_path):
    folder = tmp_path / 'read-only'
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with file_lock(str(folder / '.lock')) as locked:
            # A superuser can write anyway; everyone else runs unlocked.
            assert locked == os.access(folder, os.W_OK)
    finally:
        folder.chmod(0o755)


def test_authors_layout(tmp_path, kgat_folder):
    folder = tmp_path / 'authors'
    folder.mkdir()
    for name, pairs in (('trnMat.pkl', [(0, 0), (1, 2), (2, 1)]),
                        ('tstMat.pkl', [(0, 1), (2, 3)])):
        row, col = zip(*pairs)
        matrix = sp.coo_matrix(([1.0] * len(row), (row, col)), shape=(4, 4))
        with open(folder / name, 'wb') as f:
            pickle.dump(matrix, f)
    shutil.copy(kgat_folder / 'kg_final.txt', folder / 'kg.txt')
    assert detect_format(str(folder)) == 'authors'
    data = KGRecDataset(str(folder), val_ratio=0.0, log=False)[0]
    assert data['user'].num_nodes == 4  # From the matrix shape.
    assert data[USER_ITEM].edge_index.size(1) == 3


def test_missing_files(tmp_path):
    folder = tmp_path / 'empty'
    folder.mkdir()
    with pytest.raises(MissingFileError, match='train.txt: file not found'):
        KGRecDataset(str(folder), log=False)
    with pytest.raises(MissingFileError, match='No such dataset folder'):
        KGRecDataset(str(tmp_path / 'absent'), log=False)


def test_download_verifies_checksums(tmp_path, kgat_folder, monkeypatch):
    # A fake remote: the files of `kgat_folder` in the authors' layout.
    remote = tmp_path / 'remote'
    remote.mkdir()
    shutil.copy(kgat_folder / 'kg_final.txt', remote / 'kg.txt')
    for name in ('trnMat.pkl', 'tstMat.pkl'):
        with open(remote / name, 'wb') as f:
            pickle.dump(sp.coo_matrix(([1.0, 1.0], ([0, 1], [1, 2])),
                                      shape=(2, 4)), f)

    def fake_download(url, folder, log=True):
        path = osp.join(folder, url.rsplit('/', 1)[-1])
        shutil.copy(osp.join(str(remote), osp.basename(path)), path)
        return path

    class Remote(KGRecDataset):
        url = 'https://example.org/tiny'
        sha256 = {'kg.txt': io_module._file_digest(
            str(remote / 'kg.txt'))}

        def published_blob_ids(self):
            return {name: io_module._git_blob_id(str(remote / name))
                    for name in ('trnMat.pkl', 'tstMat.pkl')}

    monkeypatch.setattr(datasets_module, 'download_url', fake_download)
    data = Remote(str(tmp_path / 'downloaded'), val_ratio=0.0, log=False)[0]
    assert data[USER_ITEM].edge_index.size(1) == 2

    Remote.sha256 = {'kg.txt': '0' * 64}
    with pytest.raises(DataError, match='kg.txt: downloaded file is corrupt'):
        Remote(str(tmp_path / 'corrupt'), log=False)
    assert not osp.exists(tmp_path / 'corrupt' / 'kg.txt')  # Deleted.


def test_git_blob_id(tmp_path):
    # `git hash-object` of "hello\n":
    path = write(tmp_path / 'hello.txt', 'hello\n')
    assert (io_module._git_blob_id(path) ==
            'ce013625030ba8dba906f756967f9e9ca394464a')


def test_load_dataset_errors():
    with pytest.raises(MissingFileError, match='neither a dataset folder'):
        load_dataset('no-such-dataset', log=False)


@pytest.mark.slow
def test_alibaba_ifashion_statistics(tmp_path):
    root = shared_dataset('alibaba-ifashion')
    dataset = AlibabaIFashion(root, processed_dir=str(tmp_path), log=False)
    data = dataset[0]
    stats = statistics(data)
    assert stats['num_users'] == 114_737
    assert stats['num_items'] == 30_040
    assert stats['num_train'] + stats['num_val'] == 1_380_510
    assert stats['num_test'] == 400_583
    assert stats['num_triplets'] == 279_155
    assert stats['num_entities'] == 89_196
    assert stats['num_relations'] == 102
    assert stats['num_kg_edges'] == 558_310
    # One relation per ordered pair, sorted by head:
    edge_index = data[KG].edge_index
    key = edge_index[0] * stats['num_entities'] + edge_index[1]
    assert bool((key[1:] > key[:-1]).all())
    assert int(data[KG].edge_type.max()) == 101


@pytest.mark.slow
def test_last_fm_approximate_train(tmp_path):
    root = shared_dataset('last-fm')
    data = LastFM(root, processed_dir=str(tmp_path), log=False)[0]
    stats = statistics(data)
    assert stats['num_users'] == 23_566
    assert stats['num_items'] == 48_123
    assert stats['num_test'] == 423_635
    assert stats['num_train'] + stats['num_val'] == 1_119_221
    assert stats['num_triplets'] == 464_567
    assert stats['num_relations'] == 18


@pytest.mark.slow
def test_lastfm_hetrec2011(tmp_path):
    root = shared_dataset('lastfm-hetrec2011')
    data = load_dataset(root, processed_dir=str(tmp_path), log=False)
    stats = statistics(data)
    assert stats['num_users'] == 1_872
    assert stats['num_items'] == 3_846
    assert stats['num_entities'] == 9_366
    assert stats['num_train'] + stats['num_val'] == 16_919
    assert stats['num_test'] == 4_254
    assert stats['num_triplets'] == 15_518
    assert stats['num_kg_edges'] == 19_586
    assert torch.unique(data[USER_ITEM].test_edge_index[0]).numel() == 1_867
