r"""From a PyG user's own graphs to the package's layout: interactions split
by :class:`~torch_geometric.transforms.RandomLinkSplit` (or given as
train, validation and test pairs), and a knowledge graph whose entities
are linked to the items by any ids."""
from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.typing import EdgeType

from diffkg_pyg.data.graph import (
    ITEM_USER,
    KG,
    USER_ITEM,
    build_knowledge_graph,
    set_knowledge_graph,
)
from diffkg_pyg.data.validate import check_finite, check_index, validate

__all__ = ['from_pyg']


def _count(data: HeteroData, node_type: str) -> int:
    num = data[node_type].num_nodes if node_type in data.node_types \
        else None
    if num is None or isinstance(num, bool) or int(num) < 0:
        raise ValueError(f"from_pyg: data['{node_type}'].num_nodes must be "
                         f'set (got {num!r}); fix: set it to the number of '
                         f'{node_type}s')
    return int(num)


def _interaction_type(data: HeteroData,
                      edge_type: Optional[EdgeType]) -> EdgeType:
    if edge_type is not None:
        if edge_type not in data.edge_types:
            raise ValueError(f'from_pyg: no edge type {edge_type} in the '
                             f'graph (it has {data.edge_types})')
        return edge_type
    found = [t for t in data.edge_types if t[0] == 'user' and t[2] == 'item']
    if len(found) != 1:
        raise ValueError(f"from_pyg: expected one ('user', *, 'item') edge "
                         f'type, found {found}; fix: pass edge_type=')
    return found[0]


def _ids(tensor, where: str, bounds) -> Tensor:
    r""":obj:`tensor` checked as ids before anything decodes it: integer
    (not bool, not floating: a truncated float would move an id), of
    shape :obj:`[len(bounds), N]` (a vector for one bound), every row
    within its bound; returned as int64."""
    if isinstance(tensor, Tensor) and tensor.dtype != torch.long:
        if tensor.dtype == torch.bool or tensor.dtype.is_floating_point \
                or tensor.dtype.is_complex:
            raise ValueError(f'{where} must hold integer ids (got '
                             f'{tensor.dtype}); fix: pass the ids as '
                             f'torch.long')
        tensor = tensor.long()
    rows = check_index(tensor, where, bounds)
    return rows if len(bounds) > 1 else rows.view(-1)


def _check_finite(store, where: str) -> None:
    for attr in ('edge_weight', 'edge_attr', 'edge_label'):
        if attr in store:
            check_finite(store[attr], f'{where}.{attr}',
                         'drop or repair those edges')


def _positives(store, attr: str, where: str, bounds) -> Tensor:
    _check_finite(store, where)
    pairs = _ids(store[attr], f'{where}.{attr}', bounds)
    if attr == 'edge_label_index' and 'edge_label' in store:
        label = store.edge_label.view(-1)
        if label.numel() != pairs.size(1):
            raise ValueError(f'{where}.edge_label has {label.numel()} '
                             f'entries for {pairs.size(1)} pairs in '
                             f'{where}.edge_label_index; fix: one label per '
                             f'pair')
        pairs = pairs[:, label > 0]  # Not the negatives.
    return pairs


def _unique(pairs: Tensor, num_items: int) -> Tensor:
    key = torch.unique(pairs[0] * num_items + pairs[1])
    return torch.stack([key // num_items, key % num_items])


def _split(train_data, val_data, test_data, edge_type, num_users,
           num_items) -> Tuple[Tensor, Tensor, Tensor]:
    # Every raw tensor is checked (dtype, shape, ids within the counts)
    # before the pairs are encoded as user * num_items + item: an item id
    # beyond num_items would otherwise decode as another user's item.
    bounds = [('user', num_users), ('item', num_items)]
    train = train_data[edge_type]
    where = f'train_data{list(edge_type)}'
    if val_data is None and test_data is None:
        missing = [a for a in ('val_edge_index', 'test_edge_index')
                   if a not in train]
        if missing:
            raise ValueError(
                f'from_pyg: one graph needs val_edge_index and '
                f'test_edge_index on {edge_type} (missing {missing}); fix: '
                f'pass the three graphs of RandomLinkSplit')
        _check_finite(train, where)
        parts = [_ids(train[attr], f'{where}.{attr}', bounds) for attr in
                 ('edge_index', 'val_edge_index', 'test_edge_index')]
    else:
        if val_data is None or test_data is None:
            raise ValueError('from_pyg: give both val_data and test_data '
                             '(the outputs of RandomLinkSplit), or neither')
        _check_finite(train, where)
        pieces = [_ids(train.edge_index, f'{where}.edge_index', bounds)]
        if 'edge_label_index' in train:
            pieces.append(_positives(train, 'edge_label_index', where,
                                     bounds))
        parts = [torch.cat(pieces, dim=1)]
        for data, which in ((val_data, 'val_data'), (test_data,
                                                     'test_data')):
            store = data[edge_type]
            if 'edge_label_index' not in store:
                raise ValueError(f'from_pyg: {which}[{edge_type}] has no '
                                 f'edge_label_index; fix: split with '
                                 f'RandomLinkSplit(edge_types=...)')
            parts.append(_positives(store, 'edge_label_index',
                                    f'{which}{list(edge_type)}', bounds))
    return tuple(_unique(p, num_items) for p in parts)


def _entity_ids(train_data: HeteroData, num_items: int,
                item_entity: Optional[Union[Tensor, EdgeType]]
                ) -> Tuple[Tensor, Tensor, List[EdgeType]]:
    r"""The new id of every original entity (items first) and the original
    id of every new entity (-1 for an item without one)."""
    num_entities = (train_data['entity'].num_nodes
                    if 'entity' in train_data.node_types else 0)
    link = torch.full((num_items, ), -1, dtype=torch.long)
    skip: List[EdgeType] = []
    if isinstance(item_entity, tuple):
        skip.append(item_entity)
        item, entity = _ids(train_data[item_entity].edge_index,
                            f'train_data{list(item_entity)}.edge_index',
                            [('item', num_items),
                             ('entity', max(num_entities, 1))])
        if item.numel() != torch.unique(item).numel():
            raise ValueError(f'from_pyg: an item is linked to several '
                             f'entities in {item_entity}')
        link[item] = entity
    elif item_entity is not None:
        link = torch.as_tensor(item_entity)
        if link.dtype == torch.bool or link.dtype.is_floating_point:
            raise ValueError(f'from_pyg: item_entity must hold integer '
                             f'entity ids or -1 (got {link.dtype})')
        link = link.long().view(-1)
        if bool((link < -1).any()):
            i = int((link < -1).nonzero()[0, 0])
            raise ValueError(f'from_pyg: item_entity[{i}] = {int(link[i])} '
                             f'is neither an entity id nor -1 (an item '
                             f'without one)')
        if link.numel() != num_items:
            raise ValueError(f'from_pyg: item_entity must give one entity '
                             f'(or -1) per item, {num_items} (got '
                             f'{link.numel()})')
    linked = link[link >= 0]
    if linked.numel() and (int(linked.max()) >= num_entities or
                           linked.numel() != torch.unique(linked).numel()):
        raise ValueError('from_pyg: item_entity must link items to '
                         f'distinct entity ids in [0, {num_entities - 1}]')
    new_id = torch.full((num_entities, ), -1, dtype=torch.long)
    new_id[linked] = torch.nonzero(link >= 0).view(-1)
    rest = torch.nonzero(new_id < 0).view(-1)
    new_id[rest] = num_items + torch.arange(rest.numel())
    original = torch.cat([link, rest])
    return new_id, original, skip


def from_pyg(train_data: HeteroData,
             val_data: Optional[HeteroData] = None,
             test_data: Optional[HeteroData] = None, *,
             edge_type: Optional[EdgeType] = None,
             item_entity: Optional[Union[Tensor, EdgeType]] = None,
             name: Optional[str] = None) -> HeteroData:
    r"""Converts a PyG user's graphs into the package's dataset layout
    (:mod:`diffkg_pyg.data.graph`), checked by
    :func:`~diffkg_pyg.data.validate`.

    **Interactions.** Either the three graphs
    :class:`~torch_geometric.transforms.RandomLinkSplit` returns (train:
    the pairs of :obj:`edge_index` and the positive ones of
    :obj:`edge_label_index`; validation and test: the positive pairs of
    their :obj:`edge_label_index`, those with :obj:`edge_label` 1), or one
    graph whose interaction store holds :obj:`edge_index`,
    :obj:`val_edge_index` and :obj:`test_edge_index`. Users and items keep
    their ids, so recommendations come back in the user's ids.

    **Knowledge graph** (optional): edges of :obj:`train_data` between the
    node types ``entity`` and ``item``, every edge type a relation
    (``('entity', 'relation', 'entity')`` with an :obj:`edge_type`
    attribute counts as its relations), linked to the items by
    :obj:`item_entity`. The entities are renumbered so that item
    :math:`i` is entity :math:`i` (the layout's rule); the original id of
    every entity is kept as ``data['entity'].n_id`` (:obj:`-1` for an item
    that links to no entity). The inverse of every relation is added and
    the pairs are sorted (:func:`~diffkg_pyg.data.build_knowledge_graph`).

    Args:
        train_data (HeteroData): The train graph (or the only one).
        val_data (HeteroData, optional): RandomLinkSplit's validation
            graph. (default: :obj:`None`)
        test_data (HeteroData, optional): RandomLinkSplit's test graph.
            (default: :obj:`None`)
        edge_type (tuple, optional): The interaction edge type.
            (default: the only ``('user', *, 'item')`` type)
        item_entity (torch.Tensor or tuple, optional): The entity of every
            item (:obj:`[num_items]`, :obj:`-1` for none), or an edge type
            of :obj:`train_data` from items to their entities.
            (default: :obj:`None`: items are entities 0..num_items-1)
        name (str, optional): The dataset's name (``data.name``).
            (default: :obj:`None`)
    """
    edge_type = _interaction_type(train_data, edge_type)
    num_users = _count(train_data, 'user')
    num_items = _count(train_data, 'item')
    train, val, test = _split(train_data, val_data, test_data, edge_type,
                              num_users, num_items)
    if item_entity is None and 'entity' in train_data.node_types:
        item_entity = torch.arange(num_items)  # Items are entities 0..I-1.
    new_id, original, skip = _entity_ids(train_data, num_items, item_entity)
    offsets = {'item': None, 'entity': new_id}
    heads, relations, tails = [], [], []
    for kg_type in train_data.edge_types:
        src, _, dst = kg_type
        if src not in offsets or dst not in offsets or kg_type in skip:
            continue
        store = train_data[kg_type]
        where = f'train_data{list(kg_type)}'
        # Checked against the node counts before the ids are mapped (-1
        # would index the last entity):
        pairs = _ids(store.edge_index, f'{where}.edge_index',
                     [(t, _count(train_data, t)) for t in (src, dst)])
        head, tail = (pairs[i] if offsets[t] is None else offsets[t][pairs[i]]
                      for i, t in enumerate((src, dst)))
        if 'edge_type' in store:
            relation = _ids(store.edge_type, f'{where}.edge_type',
                            [('relation', 2**31)])
            if relation.numel() != head.numel():
                raise ValueError(f'{where}.edge_type has {relation.numel()} '
                                 f'entries for {head.numel()} edges; fix: '
                                 f'one relation per edge')
        else:
            relation = torch.zeros_like(head)
        base = sum(int(r.max()) + 1 for r in relations if r.numel())
        heads.append(head)
        tails.append(tail)
        relations.append(relation + base)

    data = HeteroData()
    data['user'].num_nodes = num_users
    data['item'].num_nodes = num_items
    store = data[USER_ITEM]
    store.edge_index, store.val_edge_index, store.test_edge_index = (
        train, val, test)
    data[ITEM_USER].edge_index = train.flip(0)
    if heads and torch.cat(heads).numel():
        kg = build_knowledge_graph(
            torch.cat(heads).numpy(), torch.cat(relations).numpy(),
            torch.cat(tails).numpy(), num_items=original.numel())
        data['entity'].num_nodes = kg.num_entities
        data['entity'].n_id = torch.cat([original, torch.full(
            (kg.num_entities - original.numel(), ), -1)])
        set_knowledge_graph(data[KG], kg)
    else:
        data['entity'].num_nodes = num_items
        set_knowledge_graph(data[KG], None)
    if name is not None:
        data.name = name
    data.layout = 'pyg'
    return validate(data, name=name)

