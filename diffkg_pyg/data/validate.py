r"""One check of a dataset graph before anything reaches a kernel: every
violation of the layout (see :mod:`diffkg_pyg.data.graph`) is one
:class:`ValueError` naming the store, the attribute, the first offending
index and value, and the fix."""
import warnings
from typing import Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from diffkg_pyg.data.graph import ITEM_USER, KG, USER_ITEM

__all__ = ['validate', 'SPLITS', 'check_index', 'check_finite']

#: The interaction splits of the layout, on ``data['user', 'interacts',
#: 'item']``.
SPLITS = ('edge_index', 'val_edge_index', 'test_edge_index')
_CONVERT = ('build the graph with diffkg_pyg.data.from_pyg, which converts '
            'PyG layouts (RandomLinkSplit outputs, item-entity links)')


def _where(edge_type, attr: str) -> str:
    return f'data{list(edge_type)}.{attr}'


def _num_nodes(data: HeteroData, node_type: str) -> int:
    if node_type not in data.node_types or \
            data[node_type].num_nodes is None:
        raise ValueError(f"data['{node_type}'] has no num_nodes; fix: set "
                         f"data['{node_type}'].num_nodes (users, items and "
                         f'entities are node types; items are the entities '
                         f'0..num_items-1), or {_CONVERT}')
    return int(data[node_type].num_nodes)


def _first(mask: Tensor) -> int:
    return int(mask.nonzero()[0, 0])


def check_finite(tensor, where: str, fix: str) -> None:
    r"""Raises one :class:`ValueError` naming :obj:`where`, the first row
    holding a NaN or an infinity and its value, and :obj:`fix`; a
    non-floating tensor passes."""
    if not isinstance(tensor, Tensor) or not tensor.is_floating_point():
        return
    finite = torch.isfinite(tensor)
    bad = ~(finite.all(dim=-1) if tensor.dim() > 1 else finite)
    if bool(bad.any()):
        i = _first(bad)
        value = tensor[i][~finite[i]][0] if tensor.dim() > 1 else tensor[i]
        raise ValueError(f'{where}[{i}] = {float(value)}: must be finite; '
                         f'fix: {fix}')


def check_index(tensor, where: str, bounds: Sequence[tuple]) -> Tensor:
    r"""Checks an index tensor of :obj:`len(bounds)` rows (or a vector
    for one bound) of int64 ids, row :obj:`r` in :obj:`[0,
    bounds[r][1])`, and returns it as rows; :obj:`where` names it in the
    :class:`ValueError` of a violation."""
    shape = (f'[{len(bounds)}, num_edges]' if len(bounds) > 1 else
             '[num_edges]')
    if not isinstance(tensor, Tensor):
        raise ValueError(f'{where} must be a tensor of shape {shape} (got '
                         f'{type(tensor).__name__}); fix: {where} = '
                         f'torch.as_tensor(...)')
    if tensor.dtype != torch.long:
        fix = ('.long()' if not tensor.dtype.is_floating_point else
               '.long() after checking that it holds whole numbers')
        raise ValueError(f'{where} must hold torch.int64 ids (got '
                         f'{tensor.dtype}); fix: {where} = {where}{fix}')
    rows = tensor.view(1, -1) if len(bounds) == 1 and tensor.dim() == 1 \
        else tensor
    if rows.dim() != 2 or rows.size(0) != len(bounds):
        raise ValueError(f'{where} must have shape {shape} (got '
                         f'{list(tensor.shape)}); fix: one column per edge'
                         + (', rows (source, target)' if len(bounds) == 2
                            else ''))
    for r, (kind, bound) in enumerate(bounds):
        bad = (rows[r] < 0) | (rows[r] >= bound)
        if bool(bad.any()):
            i = _first(bad)
            at = f'[{r}, {i}]' if len(bounds) > 1 else f'[{i}]'
            article = 'an' if kind in ('item', 'entity') else 'a'
            raise ValueError(
                f'{where}{at} = {int(rows[r, i])} is not {article} {kind} '
                f'id (ids '
                f'0..{bound - 1}: num_{kind}s = {bound}); fix: renumber '
                f'the {kind}s to 0..num_{kind}s-1 or raise '
                f'num_{kind}s')
    return rows


def _keys(pairs: Tensor, num_columns: int) -> Tensor:
    return pairs[0] * num_columns + pairs[1]


def _check_disjoint(store, first: str, second: str, num_items: int) -> None:
    a, b = store[first], store[second]
    if a.numel() == 0 or b.numel() == 0:
        return
    leaked = torch.isin(_keys(b, num_items), _keys(a, num_items))
    if bool(leaked.any()):
        i = _first(leaked)
        where = _where(USER_ITEM, second)
        raise ValueError(
            f'{where}[:, {i}] = (user {int(b[0, i])}, item {int(b[1, i])}) '
            f'is also in {first}: the splits must be disjoint (a pair both '
            f'trained on and evaluated scores 0); fix: remove the '
            f'{first} pairs from {second} (or split with '
            f'torch_geometric.transforms.RandomLinkSplit)')


def _check_kg(data: HeteroData, num_entities: int, require_kg: bool) -> None:
    if KG not in data.edge_types:
        if require_kg:
            raise ValueError(f'data has no knowledge graph '
                             f'{_where(KG, "edge_index")}; fix: add one, '
                             f'or {_CONVERT}')
        return
    store = data[KG]
    for attr in ('edge_index', 'edge_type', 'num_relations'):
        if attr not in store:
            raise ValueError(f'{_where(KG, attr)} is missing; fix: set it '
                             f'(the KG as ordered pairs with a relation each, '
                             f'inverses included), or {_CONVERT}')
    num_relations = store.num_relations
    if isinstance(num_relations, Tensor):
        num_relations = int(num_relations)
    if not isinstance(num_relations, int) or num_relations < 0:
        raise ValueError(f'{_where(KG, "num_relations")} must be a '
                         f'non-negative int (got {num_relations!r}); fix: '
                         f'the number of relation types, inverses included')
    pairs = check_index(store.edge_index, _where(KG, 'edge_index'),
                         [('entity', num_entities)] * 2)
    if pairs.size(1) == 0:
        if require_kg:
            raise ValueError(f'{_where(KG, "edge_index")} is empty: this '
                             f'model needs a knowledge graph; fix: add its '
                             f'triplets, or train a model without one '
                             f'(lightgcn, diffrec)')
        return
    relation = check_index(store.edge_type, _where(KG, 'edge_type'),
                            [('relation', max(num_relations, 1))])
    if relation.size(1) != pairs.size(1):
        raise ValueError(f'{_where(KG, "edge_type")} has '
                         f'{relation.size(1)} entries for '
                         f'{pairs.size(1)} pairs in '
                         f'{_where(KG, "edge_index")}; fix: one relation '
                         f'per pair (edge_type[i] is the relation of '
                         f'edge_index[:, i])')
    if num_relations == 0:
        raise ValueError(f'{_where(KG, "num_relations")} is 0 with '
                         f'{pairs.size(1)} KG pairs; fix: set it to the '
                         f'number of relation types (inverses included)')
    triplets = None
    if 'triplets' in store:
        triplets = check_index(store.triplets, _where(KG, 'triplets'),
                               [('entity', num_entities),
                                ('relation', max(num_relations // 2, 1)),
                                ('entity', num_entities)])
    key = _keys(pairs, num_entities)
    unsorted = key[1:] < key[:-1]
    if bool(unsorted.any()):
        i = _first(unsorted) + 1
        raise ValueError(
            f'{_where(KG, "edge_index")}[:, {i}] = ({int(pairs[0, i])}, '
            f'{int(pairs[1, i])}) comes after ({int(pairs[0, i - 1])}, '
            f'{int(pairs[1, i - 1])}): the pairs must be sorted by head, '
            f'then tail; fix: order them with perm = (edge_index[0] * '
            f'num_entities + edge_index[1]).argsort() (edge_type too), or '
            f'build the KG with diffkg_pyg.data.build_knowledge_graph')
    missing = ~torch.isin(_keys(pairs.flip(0), num_entities), key)
    if bool(missing.any()):
        i = _first(missing)
        raise ValueError(
            f'{_where(KG, "edge_index")}[:, {i}] = ({int(pairs[0, i])}, '
            f'{int(pairs[1, i])}) has no reverse pair ({int(pairs[1, i])}, '
            f'{int(pairs[0, i])}): the KG must hold the inverse of every '
            f'relation; fix: build it from triplets with '
            f'diffkg_pyg.data.build_knowledge_graph, which adds them')
    if triplets is None:
        return
    # Every triplet's pair is a KG edge (the edges come from them):
    absent = ~torch.isin(_keys(triplets[[0, 2]], num_entities), key)
    if bool(absent.any()):
        i = _first(absent)
        h, r, t = (int(v) for v in triplets[:, i])
        raise ValueError(
            f'{_where(KG, "triplets")}[:, {i}] = ({h}, {r}, {t}): its pair '
            f'({h}, {t}) is not in {_where(KG, "edge_index")}, so the '
            f'triplets and the edges are of two graphs; fix: build both '
            f'from the triplets with diffkg_pyg.data.build_knowledge_graph')


def validate(data: HeteroData, splits: Sequence[str] = SPLITS,
             require_kg: bool = False,
             name: Optional[str] = None) -> HeteroData:
    r"""Checks that :obj:`data` is a dataset graph of the package's layout
    (:mod:`diffkg_pyg.data.graph`) that no model can crash on, and returns
    it; the first violation raises one :class:`ValueError` that names the
    store and attribute, the first offending index and value, and the fix.

    Checked: the node counts (:obj:`num_nodes` of ``user``, ``item``,
    ``entity``, with at least as many entities as items); every interaction
    split of :obj:`splits` present, of shape :obj:`[2, num_pairs]`,
    :obj:`torch.int64`, with user and item ids in range; the splits pairwise
    disjoint; the reverse interactions (where present) equal to the train pairs
    flipped; ``edge_time`` (where present) one int64 per train pair; item
    features ``x`` (where present) floating, one row per item; the knowledge
    graph (where present, or always with :obj:`require_kg`): int64 entity pairs
    in range, sorted by head then tail, the reverse of every pair present, one
    relation per pair in :obj:`[0, num_relations)`, and its ``triplets``
    (where present) in range with every triplet's pair among the edges.

    Users evaluated on validation or test without a train pair are not an error
    (some published splits have them, e.g. Last-FM's approximate train): a
    :class:`UserWarning` says how many.

    Args:
        data (HeteroData): The graph.
        splits (sequence of str, optional): The interaction splits that
            must be present (the trainer needs all three; a model alone
            only the train pairs). (default: :obj:`SPLITS`)
        require_kg (bool, optional): Whether a non-empty knowledge graph
            is required. (default: :obj:`False`)
        name (str, optional): What the graph is, for the messages.
            (default: :obj:`None`)
    """
    if not isinstance(data, HeteroData):
        raise ValueError(f'expected a torch_geometric.data.HeteroData (got '
                         f'{type(data).__name__}); fix: {_CONVERT}')
    prefix = f'{name}: ' if name else ''
    try:
        _validate(data, tuple(splits), require_kg)
    except ValueError as error:
        raise ValueError(prefix + str(error)) from None
    return data


def _validate(data: HeteroData, splits: Sequence[str],
              require_kg: bool) -> None:
    num_users = _num_nodes(data, 'user')
    num_items = _num_nodes(data, 'item')
    num_entities = _num_nodes(data, 'entity')
    if num_users < 1 or num_items < 1:
        raise ValueError(f'the graph needs users and items (num_users = '
                         f'{num_users}, num_items = {num_items}); fix: set '
                         f"data['user'].num_nodes and data['item'].num_nodes")
    if num_entities < num_items:
        raise ValueError(f"data['entity'].num_nodes = {num_entities} is "
                         f'below num_items = {num_items}: items are the '
                         f'entities 0..num_items-1; fix: count them among '
                         f'the entities, or {_CONVERT}')
    if USER_ITEM not in data.edge_types:
        raise ValueError(f'data has no interactions '
                         f'{_where(USER_ITEM, "edge_index")}; fix: {_CONVERT}')
    store = data[USER_ITEM]
    bounds = [('user', num_users), ('item', num_items)]
    present = []
    for attr in SPLITS:
        if attr not in store:
            if attr in splits:
                raise ValueError(
                    f'{_where(USER_ITEM, "")[:-1]} has no {attr}; fix: '
                    f'give the {attr.split("_")[0]} pairs as '
                    f'{_where(USER_ITEM, attr)} [2, num_pairs], or '
                    f'{_CONVERT}')
            continue
        check_index(store[attr], _where(USER_ITEM, attr), bounds)
        present.append(attr)
    for i, first in enumerate(present):
        for second in present[i + 1:]:
            _check_disjoint(store, first, second, num_items)
    if 'edge_index' in present:
        trained = torch.zeros(num_users, dtype=torch.bool)
        trained[store.edge_index[0].cpu()] = True
        for attr in present[1:]:
            untrained = ~trained[store[attr][0].cpu()]
            if bool(untrained.any()):
                # Cold users are a property of some published splits
                # (Last-FM's approximate train: 170 test users): scored
                # from an untrained embedding, not a crash. Said, not
                # refused.
                i = _first(untrained)
                users = torch.unique(store[attr][0][untrained.to(
                    store[attr].device)]).numel()
                warnings.warn(
                    f'{_where(USER_ITEM, attr)}: {users} evaluated user(s) '
                    f'have no train pair (first: [0, {i}] = user '
                    f'{int(store[attr][0, i])}); they are scored without a '
                    f'history', UserWarning, stacklevel=3)
        _check_train_extras(data, store, num_items)
    _check_kg(data, num_entities, require_kg)


def _check_train_extras(data: HeteroData, store, num_items: int) -> None:
    train = store.edge_index
    if ITEM_USER in data.edge_types:
        reverse = data[ITEM_USER].edge_index
        where = _where(ITEM_USER, 'edge_index')
        if not isinstance(reverse, Tensor) or reverse.dtype != torch.long \
                or reverse.dim() != 2 or reverse.size(0) != 2 or \
                reverse.size(1) != train.size(1) or not torch.equal(
                    _keys(reverse.flip(0), num_items).sort().values,
                    _keys(train, num_items).sort().values):
            raise ValueError(
                f'{where} is not the train pairs reversed; fix: {where} = '
                f'{_where(USER_ITEM, "edge_index")}.flip(0) (or delete it)')
    if 'edge_time' in store:
        time = store.edge_time
        if not isinstance(time, Tensor) or time.dtype != torch.long or \
                time.dim() != 1 or time.numel() != train.size(1):
            raise ValueError(
                f'{_where(USER_ITEM, "edge_time")} must be one int64 per '
                f'train pair, shape [{train.size(1)}] (got '
                f'{getattr(time, "dtype", type(time).__name__)}, '
                f'{list(getattr(time, "shape", []))}); fix: each train '
                f"pair's position in chronological order, or delete it")
    if 'x' in data['item']:
        x = data['item'].x
        if not isinstance(x, Tensor) or not x.dtype.is_floating_point or \
                x.dim() != 2 or x.size(0) != num_items:
            raise ValueError(
                f"data['item'].x must be floating item features of shape "
                f'[{num_items}, channels] (got '
                f'{getattr(x, "dtype", type(x).__name__)}, '
                f'{list(getattr(x, "shape", []))}); fix: x[i] the features '
                f'of item i, or delete it')
        check_finite(x, "data['item'].x", 'repair or drop those features')
    if 'edge_weight' in store:
        check_finite(store.edge_weight.view(-1),
                     _where(USER_ITEM, 'edge_weight'),
                     'repair or drop those weights')
