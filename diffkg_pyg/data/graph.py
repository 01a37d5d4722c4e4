r"""Building the :class:`~torch_geometric.data.HeteroData` graph of a
knowledge-aware recommendation dataset.

The layout, shared by every dataset of the package (real or synthetic):

* node types ``'user'``, ``'item'`` and ``'entity'``; items are the first
  :obj:`num_items` entities, so item :obj:`i` and entity :obj:`i` are the
  same object;
* ``('user', 'interacts', 'item')`` with ``edge_index`` (train interactions
  after the validation hold-out), ``val_edge_index`` and ``test_edge_index``,
  each sorted by user, and its reverse ``('item', 'rev_interacts', 'user')``
  with the train interactions only;
* ``('entity', 'relation', 'entity')`` with ``edge_index`` and
  ``edge_type``: the knowledge graph as ordered head-tail pairs (inverse
  relations added, one relation per pair), sorted by head, plus
  ``num_relations``, ``num_triplets`` and ``triplets`` (every unique
  input triplet, as :obj:`[3, num_triplets]` head, relation, tail: what
  models that keep several relations per pair read, see
  :func:`kg_triplets`).

A dataset without a knowledge graph (DiffRec's layout,
:func:`build_user_item_data`) has the same layout with an empty knowledge
graph (no edges, :obj:`num_relations = 0`, the entities being the items),
and ``edge_time`` on the train interactions: each pair's position in the
chronological file order (within a user, the train pairs are in that
order).
"""
import warnings
from typing import Dict, Optional

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.utils import degree as node_degree
from torch_geometric.utils import to_torch_csr_tensor

from diffkg_pyg.data.io import DataFormatError, InteractionFile, TripletFile
from diffkg_pyg.data.split import validation_mask

__all__ = [
    'USER_ITEM',
    'ITEM_USER',
    'KG',
    'KnowledgeGraph',
    'build_knowledge_graph',
    'build_hetero_data',
    'build_user_item_data',
    'has_kg',
    'kg_triplets',
    'set_knowledge_graph',
    'bipartite_adjacency',
    'statistics',
    'format_statistics',
]

USER_ITEM = ('user', 'interacts', 'item')
ITEM_USER = ('item', 'rev_interacts', 'user')
KG = ('entity', 'relation', 'entity')


class KnowledgeGraph:
    r"""The knowledge graph as the DiffKG method sees it.

    Exact duplicate triplets are dropped, the inverse :math:`(t, r + R_0, h)`
    of every triplet is added (:math:`R_0 = \max r + 1`), and only the first
    relation seen for every ordered pair :math:`(h, t)` is kept, triplets
    being visited in sorted order and before their inverses (as in the
    authors' code).

    Attributes:
        edge_index (torch.Tensor): Head and tail of every pair, sorted by
            head then tail, shape :obj:`[2, num_edges]`.
        edge_type (torch.Tensor): The relation of every pair,
            shape :obj:`[num_edges]`.
        num_entities (int): :math:`\max(h, t) + 1` over all triplets, and at
            least :obj:`num_items`.
        num_relations (int): :math:`2 R_0`.
        num_triplets (int): The number of unique input triplets.
        triplet_index (torch.Tensor): For every pair, the index of the unique
            input triplet it comes from (an inverse pair points to the
            triplet it inverts), shape :obj:`[num_edges]`.
        triplets (torch.Tensor): The unique input triplets, sorted, as rows
            head, relation, tail, shape :obj:`[3, num_triplets]` (all of
            them, also where several relations join one pair).
    """
    def __init__(self, edge_index, edge_type, num_entities, num_relations,
                 num_triplets, triplet_index, triplets):
        self.edge_index = edge_index
        self.edge_type = edge_type
        self.num_entities = num_entities
        self.num_relations = num_relations
        self.num_triplets = num_triplets
        self.triplet_index = triplet_index
        self.triplets = triplets


def build_knowledge_graph(head: np.ndarray, relation: np.ndarray,
                          tail: np.ndarray,
                          num_items: int = 0) -> KnowledgeGraph:
    r"""Processes raw triplets into a :class:`KnowledgeGraph`.

    Args:
        head (numpy.ndarray): Head ids, shape :obj:`[num_raw_triplets]`.
        relation (numpy.ndarray): Relation ids, same shape.
        tail (numpy.ndarray): Tail ids, same shape.
        num_items (int, optional): The entity count is at least this.
            (default: :obj:`0`)
    """
    triplets = np.stack([head, relation, tail], axis=1).astype(np.int64)
    triplets = np.unique(triplets, axis=0)  # Sorted, as the authors do.
    num_triplets = triplets.shape[0]
    num_base_relations = int(triplets[:, 1].max()) + 1
    num_entities = max(int(triplets[:, [0, 2]].max()) + 1, num_items)

    src = np.concatenate([triplets[:, 0], triplets[:, 2]])
    dst = np.concatenate([triplets[:, 2], triplets[:, 0]])
    rel = np.concatenate([triplets[:, 1],
                          triplets[:, 1] + num_base_relations])
    origin = np.concatenate([np.arange(num_triplets)] * 2)
    # `np.unique` returns the first occurrence of each key, sorted by key:
    _, first = np.unique(src * num_entities + dst, return_index=True)
    edge_index = torch.from_numpy(np.stack([src[first], dst[first]]))
    return KnowledgeGraph(
        edge_index=edge_index,
        edge_type=torch.from_numpy(rel[first]),
        num_entities=num_entities,
        num_relations=2 * num_base_relations,
        num_triplets=num_triplets,
        triplet_index=torch.from_numpy(origin[first]),
        triplets=torch.from_numpy(np.ascontiguousarray(triplets.T)),
    )


def set_knowledge_graph(store, knowledge_graph: Optional[KnowledgeGraph],
                        num_relations: int = 0) -> None:
    r"""Writes :obj:`knowledge_graph` into the KG edge store of a dataset
    graph (``edge_index``, ``edge_type``, ``num_relations``,
    ``num_triplets`` and ``triplets``), or an empty knowledge graph with
    :obj:`num_relations` relation types for :obj:`None`."""
    if knowledge_graph is None:
        store.edge_index = torch.empty(2, 0, dtype=torch.long)
        store.edge_type = torch.empty(0, dtype=torch.long)
        store.triplets = torch.empty(3, 0, dtype=torch.long)
        store.num_relations = num_relations
        store.num_triplets = 0
        return
    store.edge_index = knowledge_graph.edge_index
    store.edge_type = knowledge_graph.edge_type
    store.triplets = knowledge_graph.triplets
    store.num_relations = max(knowledge_graph.num_relations, num_relations)
    store.num_triplets = knowledge_graph.num_triplets


def kg_triplets(data: HeteroData) -> Tensor:
    r"""The knowledge graph's unique triplets :obj:`[3, num_triplets]`
    (head, relation, tail; relations below :obj:`num_relations / 2`, their
    inverses being :obj:`relation + num_relations / 2`).

    The ``triplets`` of the KG store where the graph has them (the
    package's loaders, :func:`~diffkg_pyg.data.from_pyg` and
    :func:`~diffkg_pyg.data.ablate_kg` set them); otherwise the forward
    pairs of ``edge_index``, one relation per ordered pair, with a warning:
    triplets of one pair under several relations are then lost (37 % of
    lastfm-hetrec2011's share a pair).
    """
    if KG not in data.edge_types:
        return torch.empty(3, 0, dtype=torch.long)
    store = data[KG]
    if 'triplets' in store:
        return store.triplets
    if store.edge_index.size(1) > 0:
        warnings.warn(f"the knowledge graph {KG} has no 'triplets': KGIN, "
                      f'KGAT and KGCL read one relation per entity pair '
                      f'from its edge_index, so triplets that share a pair '
                      f'under another relation are lost; set '
                      f'data[{KG}].triplets = [3, T] head, relation, tail '
                      f'(the loaders and from_pyg do)', stacklevel=2)
    forward = store.edge_type < int(store.num_relations) // 2
    head, tail = store.edge_index[:, forward]
    return torch.stack([head, store.edge_type[forward], tail])


def _unique_pairs(user: np.ndarray, item: np.ndarray,
                  num_items: int) -> np.ndarray:
    key = np.unique(user * num_items + item)
    return np.stack([key // num_items, key % num_items])


def _check_items(interactions: InteractionFile, num_entities: int,
                 kg_path: str) -> None:
    beyond = np.flatnonzero(interactions.item >= num_entities)
    if beyond.size > 0:
        k = int(beyond[0])
        raise DataFormatError(
            interactions.path, interactions.locate(k),
            f'item id {int(interactions.item[k])} (user '
            f'{int(interactions.user[k])}) is beyond the entity range of the '
            f'knowledge graph {kg_path} (ids 0..{num_entities - 1}); items '
            f'must be the first entities of the knowledge graph')


#: Ids may run beyond their distinct count by this factor plus
#: :data:`_SLACK` (gaps are kept: ids are not renumbered); beyond it, the
#: tables sized by the largest id would be mostly empty rows.
_SPARSITY, _SLACK = 100, 100_000


def check_id_range(ids: np.ndarray, kind: str, path: str,
                   locate=lambda k: None) -> None:
    r"""Refuses ids far beyond their count (e.g. one id near :math:`2^{31}`
    among a thousand), which would size tables by the largest id and
    allocate gigabytes to exabytes: one :class:`DataFormatError` naming the
    file, the line (where :obj:`locate` knows it) and the id."""
    if ids.size == 0:
        return
    k = int(np.argmax(ids))
    largest = int(ids[k])
    count = np.unique(ids).size
    if largest >= 2**31 - 1 or largest + 1 > _SPARSITY * count + _SLACK:
        raise DataFormatError(
            path, locate(k), f'{kind} id {largest} is far beyond the '
            f'{count} distinct {kind} ids of the file (tables are sized by '
            f'the largest id); renumber the {kind}s to 0..{count - 1}')


def build_hetero_data(
    train: InteractionFile,
    test: InteractionFile,
    kg: Optional[TripletFile],
    val_ratio: float = 0.1,
    seed: int = 0,
    name: Optional[str] = None,
    valid: Optional[InteractionFile] = None,
    num_entities: int = 0,
) -> HeteroData:
    r"""Builds the :class:`~torch_geometric.data.HeteroData` graph of a
    dataset (layout in the module docstring) from its raw files.

    Args:
        train (InteractionFile): The train interactions.
        test (InteractionFile): The test interactions.
        kg (TripletFile, optional): The knowledge-graph triplets
            (:obj:`None` or none at all: an empty knowledge graph).
        val_ratio (float, optional): The fraction of every user's train
            interactions held out for validation (see
            :func:`~diffkg_pyg.data.validation_mask`). (default: :obj:`0.1`)
        seed (int, optional): Seed of the validation hold-out.
            (default: :obj:`0`)
        name (str, optional): The dataset's name, stored as ``data.name``.
        valid (InteractionFile, optional): The dataset's own validation
            interactions; given, nothing is held out of :obj:`train`
            (:obj:`val_ratio` and :obj:`seed` are not used).
        num_entities (int, optional): The entity count is at least this
            (a reader that maps ids knows it). (default: :obj:`0`)

    Raises:
        DataFormatError: If an item id lies beyond the knowledge graph's
            entity range.
    """
    parts = (train, test) if valid is None else (train, valid, test)
    for part in parts:
        check_id_range(part.user, 'user', part.path, part.locate)
        check_id_range(part.item, 'item', part.path, part.locate)
    if kg is not None and kg.head.size == 0:
        kg = None
    if kg is not None:
        check_id_range(np.concatenate([kg.head, kg.tail]), 'entity',
                       kg.path, lambda k: int(kg.line[k % kg.line.size]))
    num_users = max(int(p.user.max(initial=-1)) for p in parts) + 1
    num_items = max(int(p.item.max(initial=-1)) for p in parts) + 1
    unseen = ~np.isin(test.item, train.item)
    if unseen.any():
        # Kept (the authors' count, max over train and test), but said:
        # such items have no train pair, and the entities up to the
        # largest of them count as items.
        k = int(np.flatnonzero(unseen)[0])
        warnings.warn(
            f'{test.path}: {int(np.unique(test.item[unseen]).size)} test '
            f'item(s) never occur in {train.path} (first: item '
            f'{int(test.item[k])}, line {test.locate(k)}); they count as '
            f'items (num_items = {num_items}) but no model has seen them '
            f'trained', UserWarning, stacklevel=2)
    for part in parts:
        if part.shape is not None:
            num_users = max(num_users, part.shape[0])
            num_items = max(num_items, part.shape[1])

    knowledge_graph = None
    entities = max(num_entities, num_items)
    if kg is not None:
        knowledge_graph = build_knowledge_graph(kg.head, kg.relation,
                                                kg.tail, num_entities)
        entities = knowledge_graph.num_entities
        for part in parts:
            _check_items(part, entities, kg.path)

    train_pairs = _unique_pairs(train.user, train.item, num_items)
    test_pairs = _unique_pairs(test.user, test.item, num_items)
    if valid is None:
        is_val = validation_mask(train_pairs[0], val_ratio, seed)
        val_pairs = train_pairs[:, is_val]
        train_pairs = train_pairs[:, ~is_val]
    else:
        val_pairs = _unique_pairs(valid.user, valid.item, num_items)

    data = HeteroData()
    data['user'].num_nodes = num_users
    data['item'].num_nodes = num_items
    data['entity'].num_nodes = entities
    store = data[USER_ITEM]
    store.edge_index = torch.from_numpy(train_pairs)
    store.val_edge_index = torch.from_numpy(val_pairs)
    store.test_edge_index = torch.from_numpy(test_pairs)
    data[ITEM_USER].edge_index = store.edge_index.flip(0)
    set_knowledge_graph(data[KG], knowledge_graph)
    if name is not None:
        data.name = name
    return data


def build_user_item_data(train: InteractionFile, valid: InteractionFile,
                         test: InteractionFile,
                         name: Optional[str] = None) -> HeteroData:
    r"""Builds the graph of a dataset without a knowledge graph whose
    validation split is given (DiffRec's layout; see the module
    docstring): duplicate pairs keep their first occurrence, the train
    pairs are grouped by user in file (chronological) order.

    Args:
        train (InteractionFile): The train interactions, in chronological
            order per user.
        valid (InteractionFile): The validation interactions.
        test (InteractionFile): The test interactions.
        name (str, optional): The dataset's name, stored as ``data.name``.
    """
    parts = (train, valid, test)
    for part in parts:
        check_id_range(part.user, 'user', part.path, part.locate)
        check_id_range(part.item, 'item', part.path, part.locate)
    num_users = max(int(p.user.max(initial=-1)) for p in parts) + 1
    num_items = max(int(p.item.max(initial=-1)) for p in parts) + 1
    key = train.user * num_items + train.item
    _, first = np.unique(key, return_index=True)
    first = np.sort(first)  # File order,
    first = first[np.argsort(train.user[first], kind='stable')]  # by user.

    data = HeteroData()
    data['user'].num_nodes = num_users
    data['item'].num_nodes = num_items
    data['entity'].num_nodes = num_items
    store = data[USER_ITEM]
    store.edge_index = torch.from_numpy(
        np.stack([train.user[first], train.item[first]]))
    store.edge_time = torch.from_numpy(first.astype(np.int64))
    store.val_edge_index = torch.from_numpy(
        _unique_pairs(valid.user, valid.item, num_items))
    store.test_edge_index = torch.from_numpy(
        _unique_pairs(test.user, test.item, num_items))
    data[ITEM_USER].edge_index = store.edge_index.flip(0)
    set_knowledge_graph(data[KG], None)
    if name is not None:
        data.name = name
    return data


def has_kg(data: HeteroData) -> bool:
    r"""Whether a dataset graph has a knowledge graph (see
    :func:`build_user_item_data` for those without)."""
    return KG in data.edge_types and data[KG].edge_index.size(1) > 0


def bipartite_adjacency(edge_index: Tensor, num_users: int, num_items: int,
                        add_self_loops: bool = False) -> Tensor:
    r"""Returns the symmetrically normalised adjacency matrix
    :math:`\mathbf{D}^{-1/2} \mathbf{A} \mathbf{D}^{-1/2}` of the user-item
    graph (users first, then items), optionally with self-loops added to
    :math:`\mathbf{A}`, as a sparse CSR tensor of shape
    :obj:`[num_users + num_items, num_users + num_items]`.

    Args:
        edge_index (torch.Tensor): User-item pairs :obj:`[2, num_pairs]`.
        num_users (int): The number of users.
        num_items (int): The number of items.
        add_self_loops (bool, optional): Add :math:`\mathbf{I}` to
            :math:`\mathbf{A}`. (default: :obj:`False`)
    """
    if edge_index.dtype != torch.long or edge_index.dim() != 2 or \
            edge_index.size(0) != 2:
        raise ValueError(f"'edge_index' must be int64 user-item pairs of "
                         f'shape [2, num_pairs] (got {edge_index.dtype}, '
                         f'{list(edge_index.shape)})')
    if edge_index.numel() > 0:  # One host sync, for a graph built once.
        low = edge_index.min(dim=1).values.tolist()
        high = edge_index.max(dim=1).values.tolist()
        for row, kind, bound in ((0, 'user', num_users),
                                 (1, 'item', num_items)):
            if low[row] < 0 or high[row] >= bound:
                raise ValueError(
                    f"'edge_index' row {row} holds {kind} ids in "
                    f'[{low[row]}, {high[row]}], outside [0, {bound - 1}] '
                    f'(num_{kind}s = {bound})')
    num_nodes = num_users + num_items
    user, item = edge_index[0], edge_index[1] + num_users
    row, col = torch.cat([user, item]), torch.cat([item, user])
    if add_self_loops:
        loop = torch.arange(num_nodes, device=edge_index.device)
        row, col = torch.cat([row, loop]), torch.cat([col, loop])
    # (PyG's scatter count, not bincount: no host sync on a GPU.)
    degree = node_degree(row, num_nodes)
    norm = degree.pow(-0.5).masked_fill(degree == 0, 0.0)
    weight = norm[row] * norm[col]
    with warnings.catch_warnings():  # CSR tensors are labelled 'beta'.
        warnings.simplefilter('ignore', UserWarning)
        return to_torch_csr_tensor(torch.stack([row, col]), weight,
                                   size=(num_nodes, num_nodes))


def statistics(data: HeteroData) -> Dict[str, int]:
    r"""Returns the statistics of a dataset built by
    :func:`build_hetero_data`: :obj:`num_users`, :obj:`num_items`,
    :obj:`num_entities`, :obj:`num_relations`, :obj:`num_train`,
    :obj:`num_val`, :obj:`num_test`, :obj:`num_triplets` (unique input
    triplets) and :obj:`num_kg_edges` (ordered head-tail pairs after adding
    inverses)."""
    interactions, kg = data[USER_ITEM], data[KG]
    return {
        'num_users': int(data['user'].num_nodes),
        'num_items': int(data['item'].num_nodes),
        'num_entities': int(data['entity'].num_nodes),
        'num_relations': int(kg.num_relations),
        'num_train': int(interactions.edge_index.size(1)),
        'num_val': int(interactions.val_edge_index.size(1)),
        'num_test': int(interactions.test_edge_index.size(1)),
        'num_triplets': int(kg.num_triplets),
        'num_kg_edges': int(kg.edge_index.size(1)),
    }


_LABELS = {
    'num_users': 'users',
    'num_items': 'items',
    'num_entities': 'entities',
    'num_relations': 'relation types (with inverses)',
    'num_train': 'train interactions',
    'num_val': 'validation interactions',
    'num_test': 'test interactions',
    'num_triplets': 'unique triplets',
    'num_kg_edges': 'KG edges (ordered pairs, with inverses)',
}


def format_statistics(stats: Dict[str, int], title: str = 'dataset',
                      before: Optional[Dict[str, int]] = None) -> str:
    r"""Formats :func:`statistics` as a Markdown table (beside the
    statistics :obj:`before` a preparation, where given)."""
    width = max(len(label) for label in _LABELS.values())
    columns = ['count'] if before is None else ['as read', 'prepared']
    lines = [f'| {title:<{width}} |' + ''.join(f' {c:>11} |'
                                                for c in columns),
             f'|{"-" * (width + 2)}|' + f'{"-" * 12}:|' * len(columns)]
    for key, label in _LABELS.items():
        values = [stats[key]] if before is None else [before[key],
                                                      stats[key]]
        lines.append(f'| {label:<{width}} |' + ''.join(
            f' {v:>11,} |' for v in values))
    return '\n'.join(lines)
