r"""Readers for a user's own files, with string ids: RecBole's atomic files
and plain CSV/TSV tables.

* `RecBole's atomic files
  <https://recbole.io/docs/user_guide/data/atomic_files.html>`_, tab
  separated, with typed headers (``user_id:token``): ``NAME.inter``
  (``user_id``, ``item_id``; other columns such as ``rating:float`` and
  ``timestamp:float`` are read where present, the rest ignored) or
  RecBole's benchmark files ``NAME.train.inter``, ``NAME.test.inter`` and
  optionally ``NAME.valid.inter`` (the dataset's own split); optionally
  ``NAME.kg`` (``head_id``, ``relation_id``, ``tail_id``) and
  ``NAME.link`` (``item_id``, ``entity_id``, the item-to-entity map).
* CSV (``.csv``, comma separated) or TSV (``.tsv``, tab separated) with a
  header row: ``interactions.csv`` or ``train.csv``, ``test.csv`` and
  optionally ``valid.csv`` (columns ``user``, ``item``, optionally
  ``rating`` and ``timestamp``), optionally ``kg.csv`` (``head``,
  ``relation``, ``tail``) and ``link.csv`` (``item``, ``entity``).

Ids are tokens (any string). Each kind is numbered in token order (tokens
that are all non-negative integers in numeric order, so integer ids
``0..n-1`` keep their numbers): users and items over all interaction
files, relations over the knowledge graph. Items are the first entities:
the entity linked to item :math:`i` (by the link file; without one, the
entity whose token is the item's) is entity :math:`i`, and the other
entities follow in token order. The tokens are kept on the graph
(``data['user'].raw_id``, ``data['item'].raw_id``, ``data['entity'].raw_id``
and ``data['entity', 'relation', 'entity'].relation_raw_id``, lists of
strings in id order), so every output can be written in the user's ids.

Without the dataset's own split, each user's interactions are split by a
seeded ratio (:obj:`test_ratio` to test); the validation split is then
held out of the train interactions as for the other layouts. Where every
interaction file has a ``timestamp`` column, every user's train pairs are
kept in time order and ``edge_time`` gives their chronological rank (what
T-DiffRec reads). A pair listed twice in a file keeps its first row.
Every problem is one :class:`~diffkg_pyg.data.DataFormatError` naming the
file and line.
"""
import csv
import glob
import io
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch_geometric.data import HeteroData

from diffkg_pyg.data.graph import ITEM_USER, KG, USER_ITEM, build_hetero_data
from diffkg_pyg.data.io import (
    DataFormatError,
    InteractionFile,
    MissingFileError,
    TripletFile,
    _read_bytes,
)
from diffkg_pyg.data.prepare import (
    Interactions,
    Preparation,
    drop_entities,
    entity_core_mask,
    prepare_interactions,
)

__all__ = ['TABULAR_LAYOUTS', 'detect_tabular', 'read_tabular_folder',
           'raw_ids']

#: The layouts this module reads.
TABULAR_LAYOUTS = ('recbole', 'csv')

# The columns of each kind of table: (name, RecBole's field name); the
# optional interaction columns have one name in both layouts.
_COLUMNS = {
    'inter': (('user', 'user_id'), ('item', 'item_id')),
    'kg': (('head', 'head_id'), ('relation', 'relation_id'),
           ('tail', 'tail_id')),
    'link': (('item', 'item_id'), ('entity', 'entity_id')),
}
_OPTIONAL = ('rating', 'timestamp')


@dataclass
class Table:
    r"""The columns of one table read as strings.

    Attributes:
        path (str): The file read.
        columns (Dict[str, numpy.ndarray]): Each column wanted, by its
            layout-free name (``user``, ``item``, ``rating``, ...), as an
            array of strings, shape :obj:`[num_rows]`.
        line (numpy.ndarray): The 1-based line of every row.
    """
    path: str
    columns: Dict[str, np.ndarray]
    line: np.ndarray

    def where(self, row: int) -> int:
        return int(self.line[row])


def _field_name(field: str, recbole: bool) -> str:
    field = field.strip()
    return (field.split(':', 1)[0] if recbole else field).strip().lower()


def read_table(path: str, kind: str, recbole: bool) -> Table:
    r"""Reads one table of kind :obj:`'inter'`, :obj:`'kg'` or
    :obj:`'link'`: RecBole's tab-separated atomic file with typed headers
    (:obj:`recbole=True`) or a CSV/TSV file with a header row (the
    separator from the extension)."""
    data = _read_bytes(path)
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as e:
        raise DataFormatError(path, data[:e.start].count(b'\n') + 1,
                              'not UTF-8 text') from None
    delimiter = '\t' if recbole or path.endswith('.tsv') else ','
    reader = csv.reader(io.StringIO(text, newline=''), delimiter=delimiter,
                        quoting=csv.QUOTE_NONE if recbole
                        else csv.QUOTE_MINIMAL, strict=True)
    rows: List[List[str]] = []
    lines: List[int] = []
    try:
        for row in reader:
            if row and any(field.strip() for field in row):
                rows.append(row)
                lines.append(reader.line_num)
    except csv.Error as e:
        what = 'a RecBole atomic file' if recbole else 'CSV'
        raise DataFormatError(path, reader.line_num,
                              f'not readable as {what} ({e})') from None
    if not rows:
        raise DataFormatError(path, 1, 'the file is empty (a header row '
                              'and at least one row expected)')
    header = [_field_name(field, recbole) for field in rows[0]]
    # A header field -> its name (CSV headers may use RecBole's names):
    wanted = {field: name for name, field in _COLUMNS[kind]}
    if not recbole:
        wanted.update((name, name) for name, _ in _COLUMNS[kind])
    if kind == 'inter':
        wanted.update((name, name) for name in _OPTIONAL)
    found: Dict[str, int] = {}
    for position, field in enumerate(header):
        name = wanted.get(field)
        if name is not None and name not in found:
            found[name] = position
    missing = [name if not recbole else field
               for name, field in _COLUMNS[kind] if name not in found]
    if missing:
        expected = [field if recbole else name
                    for name, field in _COLUMNS[kind]]
        raise DataFormatError(
            path, lines[0], f'the header lacks the column {missing[0]!r} '
            f'(it has {", ".join(repr(f) for f in header)}; expected '
            f'{", ".join(expected)}'
            + (' with RecBole types, e.g. user_id:token' if recbole else '')
            + ')')
    width = len(header)
    body, body_lines = rows[1:], np.asarray(lines[1:], dtype=np.int64)
    for row, line in zip(body, body_lines):
        if len(row) != width:
            raise DataFormatError(path, int(line), f'{len(row)} fields; the '
                                  f'header has {width}')
    if not body:
        raise DataFormatError(path, lines[0], 'no rows under the header')
    columns = {}
    for name, position in found.items():
        values = np.array([row[position].strip() for row in body], dtype=str)
        empty = np.flatnonzero(values == '')
        if empty.size > 0:
            raise DataFormatError(path, int(body_lines[empty[0]]),
                                  f'empty {name!r} field')
        columns[name] = values
    for name in _OPTIONAL:
        if name in columns:
            columns[name] = _floats(path, name, columns[name], body_lines)
    return Table(path, columns, body_lines)


def _floats(path: str, name: str, values: np.ndarray,
            lines: np.ndarray) -> np.ndarray:
    try:
        out = values.astype(np.float64)
    except ValueError:
        out = None
    if out is not None and np.isfinite(out).all():
        return out
    for value, line in zip(values, lines):
        try:
            if np.isfinite(float(value)):
                continue
        except ValueError:
            pass
        raise DataFormatError(path, int(line), f'{name} {str(value)!r} is '
                              f'not a finite number')
    raise AssertionError('unreachable')


def token_order(tokens: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    r"""Numbers tokens: returns the vocabulary (each distinct token once, in
    id order) and every token's id. Tokens that are all non-negative
    integers (up to 18 digits) are ordered by value (ties by string), so
    integer ids :obj:`0..n-1` keep their numbers; others by string."""
    vocab, inverse = np.unique(tokens, return_inverse=True)
    if vocab.size and all(np.char.isdigit(vocab)) and \
            int(np.char.str_len(vocab).max()) <= 18:
        order = np.argsort(vocab.astype(np.int64), kind='stable')
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        return vocab[order], rank[inverse]
    return vocab, inverse


def _entity_ids(item_vocab: np.ndarray, kg: Table,
                link: Optional[Table]) -> Tuple[np.ndarray, List[str]]:
    r"""The entity id of every head and tail token of :obj:`kg` (heads
    first, then tails) and the entity vocabulary, items first."""
    item_of = {token: i for i, token in enumerate(item_vocab.tolist())}
    entity_of_item: Dict[str, int] = {}  # Entity token -> item id.
    if link is None:  # An entity whose token is an item's is that item.
        entity_of_item = dict(item_of)
    else:
        seen: Dict[str, str] = {}
        items = link.columns['item'].tolist()
        entities = link.columns['entity'].tolist()
        for row, (item, entity) in enumerate(zip(items, entities)):
            if item in seen and seen[item] != entity:
                raise DataFormatError(
                    link.path, link.where(row), f'item {item!r} is linked '
                    f'to a second entity ({entity!r}; first {seen[item]!r}):'
                    f' each item is one entity')
            if entity in entity_of_item and \
                    str(item_vocab[entity_of_item[entity]]) != item:
                raise DataFormatError(
                    link.path, link.where(row), f'entity {entity!r} is '
                    f'linked to a second item ({item!r}): each entity is '
                    f'at most one item')
            seen[item] = entity
            if item in item_of:  # Links of items never interacted: none.
                entity_of_item[entity] = item_of[item]
    tokens = np.concatenate([kg.columns['head'], kg.columns['tail']])
    is_item = np.fromiter((t in entity_of_item for t in tokens.tolist()),
                          bool, tokens.size)
    others, other_ids = token_order(tokens[~is_item])
    ids = np.empty(tokens.size, dtype=np.int64)
    ids[is_item] = [entity_of_item[t] for t in tokens[is_item].tolist()]
    ids[~is_item] = other_ids + item_vocab.size
    names = item_vocab.tolist()
    for entity, item in entity_of_item.items():
        names[item] = str(entity)
    return ids, names + others.tolist()


def _order_by_time(data: HeteroData, train: InteractionFile,
                   time: np.ndarray, num_items: int) -> None:
    r"""Orders every user's train pairs by time (ties by line) and sets
    ``edge_time``, each pair's rank in the chronological order of all of
    them (what T-DiffRec's weights read)."""
    store = data[USER_ITEM]
    edge_index = store.edge_index.numpy()
    keys = train.user * num_items + train.item
    order = np.argsort(keys)
    at = order[np.searchsorted(keys[order],
                               edge_index[0] * num_items + edge_index[1])]
    chronological = np.lexsort((train.line[at], time[at]))
    rank = np.empty_like(chronological)
    rank[chronological] = np.arange(rank.size)
    by_user = np.lexsort((rank, edge_index[0]))
    store.edge_index = torch.from_numpy(edge_index[:, by_user])
    store.edge_time = torch.from_numpy(rank[by_user])
    data[ITEM_USER].edge_index = store.edge_index.flip(0)


def build_tabular_data(
    parts: Sequence[Table],
    kg: Optional[Table] = None,
    link: Optional[Table] = None,
    val_ratio: float = 0.1,
    split_seed: int = 0,
    test_ratio: float = 0.2,
    name: Optional[str] = None,
    preparation: Optional[Preparation] = None,
) -> HeteroData:
    r"""Builds the dataset graph from tables read by :func:`read_table`.

    Args:
        parts (Sequence[Table]): The interactions: one table (split here,
            :obj:`test_ratio` of each user's interactions to test), or the
            dataset's own train and test, or train, validation and test.
        kg (Table, optional): The knowledge graph's triplets.
        link (Table, optional): The item-to-entity map.
        val_ratio (float, optional): The validation hold-out of each
            user's train interactions, where no validation table is given.
        split_seed (int, optional): Seed of the test split and the
            validation hold-out.
        test_ratio (float, optional): The test split of a single table.
        name (str, optional): The dataset's name.
        preparation (Preparation, optional): Filters and split
            (:mod:`~diffkg_pyg.data.prepare`); :obj:`None` for the
            defaults (with :obj:`test_ratio`).
    """
    prep = preparation or Preparation(test_ratio=test_ratio)
    users, user_ids = token_order(np.concatenate(
        [p.columns['user'] for p in parts]))
    items, item_ids = token_order(np.concatenate(
        [p.columns['item'] for p in parts]))
    optional = {column: np.concatenate([p.columns[column] for p in parts])
                for column in ('rating', 'timestamp')
                if all(column in p.columns for p in parts)}
    inter = Interactions(
        user_ids, item_ids, np.repeat(np.arange(len(parts)),
                                      [p.line.size for p in parts]),
        np.concatenate([p.line for p in parts]), [p.path for p in parts],
        optional.get('rating'), optional.get('timestamp'))
    prepared = prepare_interactions(inter, prep, val_ratio, split_seed)
    # Users and items that remain, renumbered in token order:
    kept = np.concatenate([prepared.train, prepared.test] + (
        [] if prepared.valid is None else [prepared.valid]))
    user_kept, item_kept = np.unique(user_ids[kept]), np.unique(
        item_ids[kept])
    users, items = users[user_kept], items[item_kept]
    new_user = np.zeros(user_ids.max() + 1, dtype=np.int64)
    new_user[user_kept] = np.arange(user_kept.size)
    new_item = np.zeros(item_ids.max() + 1, dtype=np.int64)
    new_item[item_kept] = np.arange(item_kept.size)

    def interactions(rows: np.ndarray) -> InteractionFile:
        files = np.unique(inter.part[rows]).tolist() or [0]
        return InteractionFile(', '.join(inter.paths[f] for f in files),
                               new_user[user_ids[rows]],
                               new_item[item_ids[rows]], inter.line[rows])

    triplets, entities, relations = None, items.tolist(), np.array([])
    if kg is not None:
        ids, entities = _entity_ids(items, kg, link)
        half = kg.line.size
        keep = np.ones(half, dtype=bool)
        if prep.entity_core:
            keep = entity_core_mask(ids[:half], ids[half:], items.size,
                                    prep.entity_core)
            ids, entities = drop_entities(ids, keep, entities, items.size)
            prepared.record['removed']['entity_core_triplets'] = int(
                (~keep).sum())
        relations, relation_ids = token_order(kg.columns['relation'][keep])
        triplets = TripletFile(kg.path, ids[:half][keep], relation_ids,
                               ids[half:][keep], kg.line[keep])
    train = interactions(prepared.train)
    data = build_hetero_data(
        train, interactions(prepared.test), triplets, val_ratio,
        split_seed, name, num_entities=len(entities),
        valid=None if prepared.valid is None else
        interactions(prepared.valid))
    data['user'].raw_id = users.tolist()
    data['item'].raw_id = items.tolist()
    data['entity'].raw_id = entities
    data[KG].relation_raw_id = relations.tolist()
    record = prepared.record
    split = {'test': 'given' if record['split'] == 'own' else
             record['split']}
    if record['split'] != 'own':
        split.update(test_ratio=prep.test_ratio, seed=split_seed)
    if prepared.valid is None:  # The seeded hold-out of the train pairs.
        split['validation'] = 'ratio'
    else:  # The dataset's own file, or held out as the test was.
        split['validation'] = ('given' if record['split'] == 'own' else
                               record['split'])
    if 'order' in record:
        split['order'] = record['order']
    if 'timestamp' in optional:
        _order_by_time(data, train, inter.time[prepared.train], items.size)
        split['train_order'] = 'timestamp'
    data.split = split
    if not prep.is_default:
        data.preparation = record
    return data


def _files(name) -> Optional[Dict[str, str]]:
    # `name(kind)` is the path of a kind of file ('train', 'valid', 'test',
    # 'inter', 'kg', 'link'): the dataset's own split, or one table.
    files = {}
    if osp.isfile(name('train')) and osp.isfile(name('test')):
        files = {'train': name('train'), 'test': name('test')}
        if osp.isfile(name('valid')):
            files['valid'] = name('valid')
    elif osp.isfile(name('inter')):
        files['inter'] = name('inter')
    else:
        return None
    files.update((kind, name(kind)) for kind in ('kg', 'link')
                 if osp.isfile(name(kind)))
    return files


def _recbole_files(folder: str) -> Optional[Dict[str, str]]:
    # NAME is the folder's name, or else any stem of a .inter file in it.
    stems = sorted({osp.basename(path).split('.')[0] for path in
                    glob.glob(osp.join(folder, '*.inter'))})
    for stem in [osp.basename(osp.abspath(folder))] + stems:
        prefix = osp.join(folder, stem)
        files = _files(lambda kind, prefix=prefix: f'{prefix}.{kind}.inter'
                       if kind in ('train', 'valid', 'test')
                       else f'{prefix}.{kind}')
        if files is not None:
            return files
    return None


def _csv_files(folder: str) -> Optional[Dict[str, str]]:
    for ext in ('csv', 'tsv'):
        files = _files(lambda kind, ext=ext: osp.join(
            folder, f'{"interactions" if kind == "inter" else kind}.{ext}'))
        if files is not None:
            return files
    return None


def detect_tabular(folder: str) -> Optional[str]:
    r"""Returns :obj:`'recbole'` or :obj:`'csv'` when :obj:`folder` holds
    that layout's interaction files (see the module docstring), else
    :obj:`None`."""
    if not osp.isdir(folder):
        return None
    if _recbole_files(folder) is not None:
        return 'recbole'
    if _csv_files(folder) is not None:
        return 'csv'
    return None


def read_tabular_folder(folder: str, layout: Optional[str] = None,
                        val_ratio: float = 0.1, split_seed: int = 0,
                        test_ratio: float = 0.2,
                        preparation: Optional[Preparation] = None,
                        ) -> HeteroData:
    r"""Reads a dataset folder of RecBole atomic files or CSV/TSV tables
    (see the module docstring) into the package's graph layout, its
    tokens kept; :obj:`data.layout` and :obj:`data.split` record what was
    read and how it was split.

    Args:
        folder (str): The folder.
        layout (str, optional): :obj:`'recbole'` or :obj:`'csv'`; detected
            when :obj:`None`.
        val_ratio (float, optional): Validation hold-out per user (where the
            folder has no validation file). (default: :obj:`0.1`)
        split_seed (int, optional): Seed of the splits. (default: :obj:`0`)
        test_ratio (float, optional): Test split per user of a single
            interaction file. (default: :obj:`0.2`)
        preparation (Preparation, optional): Filters and split
            (:mod:`~diffkg_pyg.data.prepare`).
    """
    layout = layout or detect_tabular(folder)
    finder = {'recbole': _recbole_files, 'csv': _csv_files}.get(layout)
    files = finder(folder) if finder is not None and osp.isdir(folder) \
        else None
    if files is None:
        expected = ('NAME.inter (or NAME.train.inter and NAME.test.inter)'
                    if layout == 'recbole' else
                    'interactions.csv (or train.csv and test.csv; .tsv '
                    'alike)')
        raise MissingFileError(folder, f'A {layout} dataset folder needs '
                               f'{expected}.')
    recbole = layout == 'recbole'
    parts = [read_table(files[key], 'inter', recbole)
             for key in ('inter', 'train', 'valid', 'test') if key in files]
    kg = read_table(files['kg'], 'kg', recbole) if 'kg' in files else None
    link = read_table(files['link'], 'link', recbole) \
        if 'link' in files and kg is not None else None
    data = build_tabular_data(parts, kg, link, val_ratio, split_seed,
                              test_ratio,
                              name=osp.basename(osp.abspath(folder)),
                              preparation=preparation)
    data.layout = layout
    return data


def raw_ids(data: HeteroData) -> Optional[Dict[str, List[str]]]:
    r"""The dataset's own user and item ids (:obj:`data['user'].raw_id` and
    :obj:`data['item'].raw_id`, as :func:`read_tabular_folder` keeps them),
    or :obj:`None` for a graph whose ids are its indices."""
    if 'raw_id' not in data['user'] or 'raw_id' not in data['item']:
        return None
    return {kind: [str(i) for i in data[kind].raw_id]
            for kind in ('user', 'item')}
