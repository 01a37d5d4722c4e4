r"""PyG dataset classes for the knowledge-aware recommendation datasets of the
DiffKG paper, and a generic one for any folder in either layout."""
import glob
import hashlib
import json
import os
import os.path as osp
import pickle
import warnings
from typing import Callable, Dict, List, Optional, Tuple

from torch_geometric.data import HeteroData, InMemoryDataset, download_url

from diffkg_pyg.data.graph import (
    build_hetero_data,
    build_user_item_data,
    format_statistics,
    statistics,
)
from diffkg_pyg.data.io import (
    DataError,
    DataFormatError,
    InteractionFile,
    MissingFileError,
    TripletFile,
    _file_digest,
    _git_blob_id,
    find_files,
    read_interaction_file,
    read_interaction_matrix,
    read_pair_array,
    read_triplet_file,
)
from diffkg_pyg.files import atomic_write, file_lock

__all__ = [
    'KGAT_FILES',
    'AUTHORS_FILES',
    'DIFFREC_FILES',
    'read_diffrec_folder',
    'detect_format',
    'read_folder',
    'KGRecDataset',
    'LastFM',
    'MIND',
    'AlibabaIFashion',
    'DATASETS',
]

KGAT_FILES = ['train.txt', 'test.txt', 'kg_final.txt']
AUTHORS_FILES = ['trnMat.pkl', 'tstMat.pkl', 'kg.txt']
DIFFREC_FILES = ['train_list.npy', 'valid_list.npy', 'test_list.npy']
#: Optional in DiffRec's layout: item embeddings (L-DiffRec's clustering).
DIFFREC_ITEM_EMBEDDINGS = 'item_emb.npy'
# Bump when the processed layout changes, to invalidate old caches:
_PROCESSED_VERSION = 2


def detect_format(folder: str, train_file: str = 'train.txt') -> str:
    r"""Returns :obj:`'kgat'` or :obj:`'authors'` from the files present in
    :obj:`folder`, raising :class:`MissingFileError` if neither layout is
    complete."""
    kgat = [train_file] + KGAT_FILES[1:]
    for layout, names in (('kgat', kgat), ('authors', AUTHORS_FILES)):
        if all(osp.isfile(osp.join(folder, name)) for name in names):
            return layout
    present = sorted(os.listdir(folder)) if osp.isdir(folder) else []
    if osp.isfile(folder):
        raise DataFormatError(folder, None, 'is a file; a dataset is a '
                              'folder of files (train.txt, test.txt, '
                              'kg_final.txt, ...)')
    for name in kgat + list(AUTHORS_FILES):
        if osp.isdir(osp.join(folder, name)):
            raise DataFormatError(osp.join(folder, name), None,
                                  'is a folder, not a file')
    missing = [n for n in kgat if not osp.isfile(osp.join(folder, n))]
    raise MissingFileError(
        osp.join(folder, missing[0]) if osp.isdir(folder) else folder,
        f'A dataset folder needs either {", ".join(kgat)} (KGAT layout) or '
        f'{", ".join(AUTHORS_FILES)} (DiffKG authors\' layout); it holds '
        f'{present or "nothing"}.')


def read_folder(
    folder: str,
    train_file: str = 'train.txt',
) -> Tuple[InteractionFile, InteractionFile, TripletFile]:
    r"""Reads the train interactions, test interactions and triplets of a
    dataset folder in either layout (see :func:`detect_format`)."""
    if detect_format(folder, train_file) == 'kgat':
        return (read_interaction_file(osp.join(folder, train_file)),
                read_interaction_file(osp.join(folder, 'test.txt')),
                read_triplet_file(osp.join(folder, 'kg_final.txt')))
    return (read_interaction_matrix(osp.join(folder, 'trnMat.pkl')),
            read_interaction_matrix(osp.join(folder, 'tstMat.pkl')),
            read_triplet_file(osp.join(folder, 'kg.txt')))


def read_diffrec_folder(folder: str) -> HeteroData:
    r"""Reads a dataset folder in DiffRec's layout (``train_list.npy``,
    ``valid_list.npy``, ``test_list.npy``; see
    :func:`~diffkg_pyg.data.build_user_item_data`): its own validation
    split is used, and it has no knowledge graph. An ``item_emb.npy``
    beside them (float item embeddings, one row per item) becomes
    ``data['item'].x``."""
    paths = find_files(folder, DIFFREC_FILES)
    train, valid, test = (read_pair_array(path) for path in paths)
    data = build_user_item_data(train, valid, test,
                                name=osp.basename(osp.abspath(folder)))
    path = osp.join(folder, DIFFREC_ITEM_EMBEDDINGS)
    if osp.isfile(path):
        import numpy as np
        import torch
        try:
            x = np.load(path, allow_pickle=False)
        except Exception as e:  # Any NumPy reading failure.
            raise DataFormatError(path, None, f'not a readable .npy array '
                                  f'({e})') from e
        num_items = data['item'].num_nodes
        if x.ndim != 2 or x.shape[0] != num_items or \
                not np.issubdtype(x.dtype, np.floating):
            raise DataFormatError(
                path, None, f'expected float item embeddings of shape '
                f'[{num_items}, d]; found {x.dtype} {list(x.shape)}')
        data['item'].x = torch.from_numpy(x.astype(np.float32))
    return data


def _read_only(path: str) -> bool:
    # The permission bits, not `os.access`: a folder marked read-only stays
    # untouched even for a superuser.
    return not os.access(path, os.W_OK) or not os.stat(path).st_mode & 0o222


def _default_cache_dir(root: str) -> str:
    key = hashlib.sha256(osp.abspath(root).encode()).hexdigest()[:16]
    base = osp.join(osp.expanduser('~'), '.cache', 'diffkg_pyg')
    return osp.join(base, f'{osp.basename(osp.abspath(root))}-{key}')


class KGRecDataset(InMemoryDataset):
    r"""A knowledge-aware recommendation dataset read from a folder in the
    KGAT layout (``train.txt``, ``test.txt``, ``kg_final.txt``) or in the
    DiffKG authors' layout (``trnMat.pkl``, ``tstMat.pkl``, ``kg.txt``),
    detected from the files present, as one
    :class:`~torch_geometric.data.HeteroData` graph (layout in
    :mod:`diffkg_pyg.data.graph`).

    The raw files are read from :obj:`root` itself. The processed graph is
    cached in :obj:`processed_dir` under a name that carries the SHA-256 of
    the raw files and the split settings: it is reused while they are
    unchanged and rebuilt as soon as any of them changes. Processes that
    open the same folder at once take turns on a lock file beside the
    cache, so one builds it and the others load it.

    Args:
        root (str): The folder holding the raw files.
        val_ratio (float, optional): The fraction of every user's train
            interactions held out for validation. (default: :obj:`0.1`)
        split_seed (int, optional): Seed of the validation hold-out.
            (default: :obj:`0`)
        processed_dir (str, optional): Where to cache the processed graph.
            Defaults to :obj:`root/processed` when :obj:`root` is writable,
            else to a folder under :obj:`~/.cache/diffkg_pyg`.
        transform (callable, optional): Applied to the graph on every access.
        pre_transform (callable, optional): Applied before caching.
        force_reload (bool, optional): Rebuild the cache. (default:
            :obj:`False`)
        log (bool, optional): Print progress and the statistics table.
            (default: :obj:`True`)
    """
    #: Base address of the raw files, for datasets that can download them.
    url: Optional[str] = None
    #: Expected SHA-256 of raw files, by file name.
    sha256: Dict[str, str] = {}
    #: Expected git blob ids of raw files, by file name.
    git_blob: Dict[str, str] = {}
    #: Train files accepted in the KGAT layout, in order of preference.
    train_files: Tuple[str, ...] = ('train.txt', )

    def __init__(
        self,
        root: str,
        val_ratio: float = 0.1,
        split_seed: int = 0,
        processed_dir: Optional[str] = None,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        force_reload: bool = False,
        log: bool = True,
    ) -> None:
        if not 0.0 <= val_ratio < 1.0:
            raise ValueError(
                f"'val_ratio' must lie in [0, 1) (got {val_ratio})")
        root = osp.expanduser(root)
        if self.url is None and not osp.isdir(root):
            raise MissingFileError(root, 'No such dataset folder.')
        self.val_ratio = val_ratio
        self.split_seed = split_seed
        if processed_dir is None:
            if self.url is not None:
                os.makedirs(root, exist_ok=True)
            processed_dir = osp.join(root, 'processed')
            if _read_only(root):
                processed_dir = _default_cache_dir(root)
        self._processed_dir = processed_dir
        self._fingerprint: Optional[str] = None
        # Processes started together on one folder (a shared tuning study,
        # distributed ranks) take turns: the first builds the cache, the
        # others find it and load it, and none removes a stale cache while
        # another is loading it.
        with file_lock(osp.join(processed_dir, '.lock')):
            super().__init__(root, transform, pre_transform, log=log,
                             force_reload=force_reload)
            try:
                self.load(self.processed_paths[0], data_cls=HeteroData)
            except (RuntimeError, EOFError, OSError, ValueError,
                    pickle.UnpicklingError) as error:
                # A damaged cache (a full disk, a killed copy) is rebuilt
                # from the raw files, not reported as the data's fault.
                warnings.warn(f'{self.processed_paths[0]}: unreadable '
                              f'processed cache ({type(error).__name__}); '
                              f'rebuilt from the raw files', UserWarning,
                              stacklevel=2)
                super().__init__(root, transform, pre_transform, log=log,
                                 force_reload=True)
                self.load(self.processed_paths[0], data_cls=HeteroData)
        if log:
            print(format_statistics(statistics(self._data), self.name))

    @property
    def name(self) -> str:
        return osp.basename(osp.abspath(self.root))

    @property
    def raw_dir(self) -> str:
        return self.root

    @property
    def processed_dir(self) -> str:
        return self._processed_dir

    @property
    def train_file(self) -> str:
        for name in self.train_files:
            if osp.isfile(osp.join(self.raw_dir, name)):
                return name
        return self.train_files[0]

    @property
    def raw_file_names(self) -> List[str]:
        kgat = [self.train_file] + KGAT_FILES[1:]
        if all(osp.isfile(osp.join(self.raw_dir, n)) for n in kgat):
            return kgat
        if self.url is None:  # Let `detect_format` explain what is missing.
            detect_format(self.raw_dir, self.train_file)
        return AUTHORS_FILES

    @property
    def processed_file_names(self) -> str:
        if self._fingerprint is None:
            digest = hashlib.sha256(json.dumps({
                'version': _PROCESSED_VERSION,
                'val_ratio': self.val_ratio,
                'split_seed': self.split_seed,
                'files': {
                    name: _file_digest(osp.join(self.raw_dir, name))
                    for name in self.raw_file_names
                },
            }, sort_keys=True).encode())
            self._fingerprint = digest.hexdigest()[:16]
        return f'data_{self._fingerprint}.pt'

    def download(self) -> None:
        if self.url is None:  # Never reached: `raw_file_names` raises.
            raise MissingFileError(self.raw_dir)
        if _read_only(self.raw_dir):
            raise DataError(f'{self._missing_files()}, and it is read-only, '
                            f'so they cannot be downloaded into it')
        try:
            blob_ids = {**self.published_blob_ids(), **self.git_blob}
            paths = [
                download_url(f'{self.url}/{name}', self.raw_dir,
                             log=self.log) for name in AUTHORS_FILES
            ]
        except OSError as e:  # urllib's errors are OSErrors.
            raise DataError(f'{self._missing_files()}, and downloading the '
                            f'latter from {self.url} failed: {e}') from e
        for path in paths:
            self._verify(path, blob_ids.get(osp.basename(path)))

    def _missing_files(self) -> str:
        kgat = ', '.join([self.train_file] + KGAT_FILES[1:])
        return (f'{self.raw_dir} holds neither the KGAT files ({kgat}) nor '
                f'the DiffKG authors\' files ({", ".join(AUTHORS_FILES)})')

    def published_blob_ids(self) -> Dict[str, str]:
        r"""Returns the git blob ids of the raw files as published in the
        source repository (used to verify downloads whose checksum is not
        written into the class). Returns an empty dictionary by default."""
        return {}

    def _verify(self, path: str, blob_id: Optional[str]) -> None:
        name = osp.basename(path)
        checks = []
        if name in self.sha256:
            checks.append(('SHA-256', self.sha256[name], _file_digest(path)))
        if blob_id is not None:
            checks.append(('git blob', blob_id, _git_blob_id(path)))
        if not checks:
            os.remove(path)
            raise DataError(f'{path}: no checksum is known for this file, so '
                            f'its integrity cannot be verified; it was '
                            f'deleted')
        for kind, expected, found in checks:
            if found != expected:
                os.remove(path)
                raise DataError(
                    f'{path}: downloaded file is corrupt ({kind} {found}, '
                    f'expected {expected}); it was deleted, try again')

    def process(self) -> None:
        train, test, kg = read_folder(self.raw_dir, self.train_file)
        data = build_hetero_data(train, test, kg, self.val_ratio,
                                 self.split_seed, name=self.name)
        if self.pre_transform is not None:
            data = self.pre_transform(data)
        for stale in glob.glob(osp.join(self.processed_dir, 'data_*.pt')):
            if stale != self.processed_paths[0]:
                os.remove(stale)
        # Write aside, then rename: an interrupted run leaves no partial
        # cache that a later load would take for a complete one.
        atomic_write(self.processed_paths[0],
                     lambda temporary: self.save([data], temporary))

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.name})'


_DIFFKG_COMMIT = 'c92465940f5ec410ab52cc108951e66fb1908a0e'
_DIFFKG_URL = ('https://raw.githubusercontent.com/HKUDS/DiffKG/'
               f'{_DIFFKG_COMMIT}/Datasets')
_DIFFKG_TREE = ('https://api.github.com/repos/HKUDS/DiffKG/git/trees/'
                f'{_DIFFKG_COMMIT}?recursive=1')


class _DiffKGAuthorsDataset(KGRecDataset):
    # The authors' pickled matrices have no checksum published elsewhere:
    # they are verified against the git blob ids of the pinned commit's tree.
    def published_blob_ids(self) -> Dict[str, str]:
        import urllib.request

        folder = 'Datasets/' + self.url.rsplit('/', 1)[-1] + '/'
        with urllib.request.urlopen(_DIFFKG_TREE, timeout=60) as response:
            tree = json.load(response)['tree']
        return {
            entry['path'][len(folder):]: entry['sha']
            for entry in tree if entry['path'].startswith(folder)
        }


class LastFM(_DiffKGAuthorsDataset):
    r"""The Last-FM dataset of the `"DiffKG: Knowledge Graph Diffusion Model
    for Recommendation" <https://arxiv.org/abs/2312.16890>`_ paper (KGAT's
    version: 23,566 users, 48,123 items, 9 relations, 464,567 triplets).

    Reads :obj:`root` in either layout; when it holds neither, downloads the
    authors' files (``trnMat.pkl``, ``tstMat.pkl``, ``kg.txt``) from
    HKUDS/DiffKG at a pinned commit and verifies ``kg.txt`` against its
    known SHA-256 and git blob id. In the KGAT layout the approximate train
    split ``train_approx_union_minus_test.txt`` (see
    ``datasets/last-fm.md``) is accepted when ``train.txt`` is absent.
    See :class:`KGRecDataset` for the arguments.
    """
    url = f'{_DIFFKG_URL}/lastfm'
    sha256 = {'kg.txt': '8e3c22a89543f8827fb056044774474f'
              '9a9dddd9ff648a264b8ea316807c1f54'}
    git_blob = {'kg.txt': '42d2726e067d743bf73891a7ff8caddb5c1adf84'}
    train_files = ('train.txt', 'train_approx_union_minus_test.txt')


class MIND(_DiffKGAuthorsDataset):
    r"""The MIND dataset of the `"DiffKG: Knowledge Graph Diffusion Model
    for Recommendation" <https://arxiv.org/abs/2312.16890>`_ paper (KGRec's
    ``mind-f``: 100,000 users, 30,577 items, 512 relations).

    Reads :obj:`root` in either layout; when it holds neither, downloads the
    authors' files from HKUDS/DiffKG at a pinned commit and verifies
    ``kg.txt``. See :class:`KGRecDataset` for the arguments.
    """
    url = f'{_DIFFKG_URL}/mind'
    sha256 = {'kg.txt': 'ea0a42faa420855749e6176f1bf14c31'
              'c821e8b5ee571ceb72c28ae2cba7f0e6'}
    git_blob = {'kg.txt': '115f7418a16bf22496e630653ca78d6e42b30fc5'}


class AlibabaIFashion(_DiffKGAuthorsDataset):
    r"""The Alibaba-iFashion dataset of the `"DiffKG: Knowledge Graph
    Diffusion Model for Recommendation" <https://arxiv.org/abs/2312.16890>`_
    paper (KGIN's version: 114,737 users, 30,040 items, 51 relations,
    279,155 triplets).

    Reads :obj:`root` in either layout; when it holds neither, downloads the
    authors' files from HKUDS/DiffKG at a pinned commit and verifies
    ``kg.txt``. See :class:`KGRecDataset` for the arguments.
    """
    url = f'{_DIFFKG_URL}/alibaba'
    sha256 = {'kg.txt': '8a44700fd76efe438ac3d8f6ae9a3ee1'
              'e117c70d82c1d8a2d20766fa6686489e'}
    git_blob = {'kg.txt': '24b7482fcc7d1431a8c2a91374bf5784464f63e8'}


#: The built-in datasets, by name (aliases included).
DATASETS: Dict[str, type] = {
    'last-fm': LastFM,
    'lastfm': LastFM,
    'mind': MIND,
    'alibaba-ifashion': AlibabaIFashion,
    'alibaba': AlibabaIFashion,
}
