r"""Loading a dataset graph by folder or by name, whatever its layout."""
import os.path as osp
from typing import Optional

import numpy as np
from torch_geometric.data import HeteroData

from diffkg_pyg.data.datasets import (
    AUTHORS_FILES,
    DATASETS,
    DIFFREC_FILES,
    KGAT_FILES,
    KGRecDataset,
    detect_format,
    read_diffrec_folder,
    read_folder,
)
from diffkg_pyg.data.graph import format_statistics, statistics
from diffkg_pyg.data.io import DataFormatError, MissingFileError
from diffkg_pyg.data.prepare import Preparation
from diffkg_pyg.data.tabular import (
    TABULAR_LAYOUTS,
    Table,
    build_tabular_data,
    detect_tabular,
    read_tabular_folder,
)
from diffkg_pyg.data.validate import validate

__all__ = ['load_dataset']


def load_dataset(
    name_or_path: Optional[str] = None,
    data_root: str = 'data',
    val_ratio: float = 0.1,
    split_seed: int = 0,
    processed_dir: Optional[str] = None,
    log: bool = True,
    layout: Optional[str] = None,
    test_ratio: float = 0.2,
    preparation: Optional[Preparation] = None,
) -> HeteroData:
    r"""Loads a dataset graph by folder or by name.

    The graph records where it came from: :obj:`data.name` (the folder's
    name, or :obj:`'synthetic'`) and :obj:`data.layout` (:obj:`'kgat'`,
    :obj:`'authors'`, :obj:`'diffrec'`, :obj:`'recbole'`, :obj:`'csv'` or
    :obj:`'synthetic'`), which result files record.

    Args:
        name_or_path (str, optional): A folder in the KGAT or the DiffKG
            authors' layout (see :func:`detect_format`; a folder named like
            a built-in dataset is read by that dataset's class), of RecBole
            atomic files or CSV/TSV tables (see :obj:`layout`), or in
            DiffRec's (with
            ``train_list.npy``: see :func:`read_diffrec_folder`; its own
            validation split is used, :obj:`val_ratio` and
            :obj:`split_seed` are not), the name of a built-in dataset
            (``'last-fm'``, ``'mind'``, ``'alibaba-ifashion'``; read from or
            downloaded to :obj:`data_root/<name>`), or ``'synthetic'`` /
            :obj:`None` for the embedded default
            (:func:`~diffkg_pyg.data.synthetic_dataset`).

        data_root (str, optional): Where named datasets live.
            (default: :obj:`'data'`)
        val_ratio (float, optional): Validation hold-out per user.
            (default: :obj:`0.1`)
        split_seed (int, optional): Seed of the validation hold-out (and of
            the synthetic generator). (default: :obj:`0`)
        processed_dir (str, optional): Cache folder (see
            :class:`KGRecDataset`).
        log (bool, optional): Print progress and statistics.
            (default: :obj:`True`)
        layout (str, optional): :obj:`'recbole'` or :obj:`'csv'` to read a
            folder of RecBole atomic files or CSV/TSV tables with string
            ids (:func:`~diffkg_pyg.data.read_tabular_folder`); they are
            also detected in a folder of none of the other layouts.
        test_ratio (float, optional): The seeded per-user test split of
            such a folder's single interaction file. (default: :obj:`0.2`)
        preparation (Preparation, optional): Filters and a split of the
            interactions (:mod:`~diffkg_pyg.data.prepare`), for the
            RecBole, CSV, KGAT and authors' layouts; the folder's files are
            then read as tables, and ids renumbered over what remains, the
            original ids kept (:obj:`data['item'].raw_id`, ...). Its
            :obj:`test_ratio` replaces :obj:`test_ratio`.
    """
    from diffkg_pyg.data.synthetic import synthetic_dataset

    if preparation is not None and preparation.is_default:
        test_ratio, preparation = preparation.test_ratio, None
    if name_or_path is None or name_or_path == 'synthetic':
        if preparation is not None:
            raise ValueError('the embedded synthetic dataset has its own '
                             'split; filters and splits apply to dataset '
                             'folders')
        data = synthetic_dataset(val_ratio=val_ratio, seed=split_seed)
        data.layout = 'synthetic'
        if log:
            print(format_statistics(statistics(data), 'synthetic'))
        return validate(data, name='synthetic')
    if layout is not None and layout not in TABULAR_LAYOUTS:
        raise ValueError(f'unknown layout {layout!r} (named layouts: '
                         f'{", ".join(TABULAR_LAYOUTS)}; the others are '
                         f'detected)')
    folder = str(name_or_path)
    if layout is None and osp.isdir(folder) and not any(
            osp.isfile(osp.join(folder, name)) for name in
            (DIFFREC_FILES[0], KGAT_FILES[0], AUTHORS_FILES[0])):
        layout = detect_tabular(folder)
    if layout is not None:
        data = read_tabular_folder(folder, layout, val_ratio, split_seed,
                                   test_ratio, preparation)
        if log:
            print(format_statistics(statistics(data), data.name))
        return validate(data, name=folder)
    kwargs = dict(val_ratio=val_ratio, split_seed=split_seed,
                  processed_dir=processed_dir, log=log)
    if osp.isfile(osp.join(str(name_or_path), DIFFREC_FILES[0])):
        if preparation is not None:
            raise ValueError(f"{name_or_path}: filters and splits apply to "
                             f"the RecBole, CSV, KGAT and authors' layouts, "
                             f"not to DiffRec's (its split is fixed)")
        data = read_diffrec_folder(name_or_path)
        data.layout = 'diffrec'
        if log:
            print(format_statistics(statistics(data), data.name))
        return validate(data, name=str(name_or_path))
    dataset = None
    if osp.isfile(name_or_path):
        raise DataFormatError(str(name_or_path), None, 'is a file; DATA is a '
                              'dataset folder (train.txt, test.txt, '
                              'kg_final.txt, ...) or a built-in name')
    if osp.isdir(name_or_path):
        name = osp.basename(osp.abspath(name_or_path)).lower()
        dataset = DATASETS.get(name, KGRecDataset)(name_or_path, **kwargs)
    elif name_or_path.lower() in DATASETS:
        dataset = DATASETS[name_or_path.lower()](
            osp.join(data_root, name_or_path.lower()), **kwargs)
    if dataset is not None and preparation is not None:
        data = _prepared_folder(dataset, preparation, val_ratio, split_seed)
        if log:
            print(format_statistics(statistics(data), data.name))
        return validate(data, name=str(name_or_path))
    if dataset is not None:
        data = dataset[0]
        # The layout of the raw files (the data's name is the folder's):
        data.layout = detect_format(dataset.raw_dir, dataset.train_file)
        return validate(data, name=str(name_or_path))
    raise MissingFileError(
        name_or_path, f'It is neither a dataset folder nor a built-in '
        f'dataset ({", ".join(["synthetic"] + sorted(DATASETS))}).')


def _prepared_folder(dataset: KGRecDataset, preparation: Preparation,
                     val_ratio: float, split_seed: int) -> HeteroData:
    r"""A KGAT or authors' folder read as tables and prepared (its ids
    become tokens, so what remains is renumbered and the ids kept)."""
    train, test, kg = read_folder(dataset.raw_dir, dataset.train_file)

    def table(part, columns) -> Table:
        line = part.line if part.line is not None else \
            np.arange(1, getattr(part, columns[0]).size + 1)
        return Table(part.path, {c: getattr(part, c).astype(str)
                                 for c in columns}, line)

    data = build_tabular_data(
        [table(p, ('user', 'item')) for p in (train, test)],
        table(kg, ('head', 'relation', 'tail')) if kg.head.size else None,
        None, val_ratio, split_seed, preparation=preparation,
        name=dataset.name)
    data.layout = detect_format(dataset.raw_dir, dataset.train_file)
    return data
