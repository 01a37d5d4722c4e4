import pytest
import torch
import torch_geometric.transforms as T
from torch_geometric.data import HeteroData

from diffkg_pyg.data import KG, USER_ITEM, from_pyg
from examples.pyg_loop import make_graph

RATES = ('user', 'rates', 'item')


def split(graph, negatives=False):
    torch.manual_seed(0)
    return T.RandomLinkSplit(num_val=0.1, num_test=0.2, edge_types=[RATES],
                             add_negative_train_samples=negatives)(graph)


def pairs(tensor):
    return set(map(tuple, tensor.t().tolist()))


@pytest.mark.parametrize('negatives', [False, True])
def test_random_link_split_becomes_the_layout(negatives):
    graph = make_graph(num_users=40, num_items=30, num_entities=60)
    train, val, test = split(graph, negatives)
    data = from_pyg(train, val, test, item_entity=('item', 'is', 'entity'))
    store = data[USER_ITEM]
    assert pairs(store.edge_index) == pairs(train[RATES].edge_index)
    for part, attr in ((val, 'val_edge_index'), (test, 'test_edge_index')):
        label = part[RATES].edge_label
        positive = part[RATES].edge_label_index[:, label > 0]
        assert pairs(store[attr]) == pairs(positive)  # No negatives.
    everything = pairs(graph[RATES].edge_index)
    assert pairs(store.edge_index) | pairs(store.val_edge_index) | pairs(
        store.test_edge_index) == everything
    assert data.layout == 'pyg'


def test_entities_are_renumbered_items_first_and_mapped_back():
    graph = make_graph(num_users=40, num_items=30, num_entities=60)
    data = from_pyg(*split(graph), item_entity=('item', 'is', 'entity'))
    n_id = data['entity'].n_id
    item, entity = graph['item', 'is', 'entity'].edge_index
    assert torch.equal(n_id[item], entity)  # Item i is entity i.
    assert sorted(n_id[n_id >= 0].tolist()) == list(range(60))
    # Every original triplet is there, in new ids, with its inverse:
    new_id = torch.empty(60, dtype=torch.long)
    new_id[n_id[n_id >= 0]] = torch.nonzero(n_id >= 0).view(-1)
    head, tail = graph[KG].edge_index
    kept = pairs(data[KG].edge_index)
    for h, t in zip(new_id[head].tolist(), new_id[tail].tolist()):
        assert (h, t) in kept and (t, h) in kept
    assert data[KG].num_relations == 2 * 5


def test_item_entity_as_a_tensor_and_items_without_entity():
    graph = make_graph(num_users=40, num_items=30, num_entities=60)
    link = torch.full((30, ), -1)
    item, entity = graph['item', 'is', 'entity'].edge_index
    link[item[:20]] = entity[:20]  # Ten items without an entity.
    del graph['item', 'is', 'entity']
    data = from_pyg(*split(graph), item_entity=link)
    assert (data['entity'].n_id[20:30] == -1).all()
    assert data['entity'].num_nodes == 30 + 60 - 20


def test_one_graph_with_its_splits():
    data = from_pyg(*split(make_graph(num_users=40, num_items=30,
                                      num_entities=60)),
                    item_entity=('item', 'is', 'entity'))
    one = HeteroData()
    one['user'].num_nodes, one['item'].num_nodes = 40, 30
    for attr in ('edge_index', 'val_edge_index', 'test_edge_index'):
        one['user', 'buys', 'item'][attr] = data[USER_ITEM][attr]
    out = from_pyg(one)
    for attr in ('edge_index', 'val_edge_index', 'test_edge_index'):
        assert torch.equal(out[USER_ITEM][attr], data[USER_ITEM][attr])
    assert out[KG].edge_index.size(1) == 0


@pytest.mark.parametrize('change,match', [
    (lambda t, v, s: (t, v, None), 'give both val_data and test_data'),
    (lambda t, v, s: (t, t, s), 'has no edge_label_index'),
])
def test_bad_pyg_inputs(change, match):
    graph = make_graph(num_users=40, num_items=30, num_entities=60)
    train, val, test = split(graph)
    if match == 'has no edge_label_index':
        del train[RATES].edge_label_index
    with pytest.raises(ValueError, match=match):
        from_pyg(*change(train, val, test),
                 item_entity=('item', 'is', 'entity'))


def test_items_linked_to_one_entity_are_refused():
    graph = make_graph(num_users=40, num_items=30, num_entities=60)
    link = torch.zeros(30, dtype=torch.long)
    with pytest.raises(ValueError, match='distinct entity ids'):
        from_pyg(*split(graph), item_entity=link)
