import numpy as np
import pytest
import torch
from torch_geometric.data import HeteroData

from diffkg_pyg.data import (
    ITEM_USER,
    KG,
    USER_ITEM,
    DataFormatError,
    bipartite_adjacency,
    build_hetero_data,
    build_knowledge_graph,
    format_statistics,
    kg_triplets,
    read_folder,
    set_knowledge_graph,
    statistics,
)


def test_build_knowledge_graph_hand_made():
    # Triplets (h, r, t): a duplicate, a pair with two relations, and a pair
    # whose inverse collides with an original triplet.
    head = np.array([0, 0, 0, 1, 2, 0])
    relation = np.array([1, 0, 1, 0, 1, 1])
    tail = np.array([2, 2, 2, 0, 0, 2])
    kg = build_knowledge_graph(head, relation, tail, num_items=5)
    assert kg.num_triplets == 4  # (0,0,2) (0,1,2) (1,0,0) (2,1,0)
    assert kg.num_relations == 4
    assert kg.num_entities == 5  # max id 2, but never fewer than the items.
    pairs = {(h, t): r for h, t, r in zip(*kg.edge_index.tolist(),
                                         kg.edge_type.tolist())}
    # Sorted originals first, so (0, 2) keeps relation 0 (not 1); (2, 0) is
    # an original triplet with relation 1 and wins over the inverses of
    # (0, 0, 2) and (0, 1, 2); (0, 1) is the inverse of (1, 0, 0).
    assert pairs == {(0, 2): 0, (1, 0): 0, (2, 0): 1, (0, 1): 2}
    assert kg.edge_index.tolist() == [[0, 0, 1, 2], [1, 2, 0, 0]]
    assert kg.triplet_index.tolist() == [2, 0, 2, 3]
    # Every unique triplet, sorted, also the second relation of (0, 2):
    assert kg.triplets.t().tolist() == [[0, 0, 2], [0, 1, 2], [1, 0, 0],
                                        [2, 1, 0]]


def test_kg_triplets_from_the_store_or_the_forward_pairs():
    kg = build_knowledge_graph(np.array([0, 0, 1]), np.array([0, 1, 0]),
                               np.array([2, 2, 0]), num_items=3)
    data = HeteroData()
    set_knowledge_graph(data[KG], kg)
    assert torch.equal(kg_triplets(data), kg.triplets)
    assert data[KG].num_triplets == 3 and data[KG].num_relations == 4
    del data[KG].triplets  # A hand-made graph: one relation per pair,
    with pytest.warns(UserWarning, match="has no 'triplets'"):  # said.
        assert kg_triplets(data).t().tolist() == [[0, 0, 2], [1, 0, 0]]
    set_knowledge_graph(data[KG], None, num_relations=4)
    assert kg_triplets(data).shape == (3, 0)
    assert data[KG].num_relations == 4
    assert kg_triplets(HeteroData()).shape == (3, 0)


def test_build_hetero_data(kgat_folder):
    train, test, kg = read_folder(str(kgat_folder))
    data = build_hetero_data(train, test, kg, val_ratio=0.0, name='tiny')
    assert data.name == 'tiny'
    assert data['user'].num_nodes == 3
    assert data['item'].num_nodes == 4
    assert data['entity'].num_nodes == 6
    store = data[USER_ITEM]
    assert store.edge_index.tolist() == [[0, 0, 0, 1, 1, 1, 2, 2],
                                         [0, 1, 2, 1, 2, 3, 0, 3]]
    assert store.val_edge_index.size() == (2, 0)
    assert store.test_edge_index.tolist() == [[0, 1, 2, 2], [3, 0, 1, 2]]
    assert torch.equal(data[ITEM_USER].edge_index, store.edge_index.flip(0))
    assert data[KG].edge_index.size(1) == 8
    assert data[KG].edge_type.dtype == torch.long
    assert statistics(data) == {
        'num_users': 3, 'num_items': 4, 'num_entities': 6,
        'num_relations': 4, 'num_train': 8, 'num_val': 0, 'num_test': 4,
        'num_triplets': 4, 'num_kg_edges': 8
    }
    table = format_statistics(statistics(data), 'tiny')
    assert '| users' in table and '|           8 |' in table


@pytest.mark.parametrize('val_ratio', [0.2, 0.5])
def test_build_hetero_data_validation(kgat_folder, val_ratio):
    train, test, kg = read_folder(str(kgat_folder))
    data = build_hetero_data(train, test, kg, val_ratio=val_ratio)
    store = data[USER_ITEM]
    both = torch.cat([store.edge_index, store.val_edge_index], dim=1)
    assert both.size(1) == 8
    assert torch.unique(both, dim=1).size(1) == 8
    assert store.val_edge_index.size(1) > 0
    # Every user keeps train interactions:
    assert torch.unique(store.edge_index[0]).tolist() == [0, 1, 2]


@pytest.mark.parametrize('file_name', ['train.txt', 'test.txt'])
def test_item_beyond_entity_range(kgat_folder, file_name):
    with open(kgat_folder / file_name, 'a') as f:
        f.write('1 6\n')
    train, test, kg = read_folder(str(kgat_folder))
    with pytest.raises(DataFormatError, match='item id 6 .* beyond the '
                       'entity range') as info:
        build_hetero_data(train, test, kg)
    assert info.value.path.endswith(file_name)
    assert info.value.line == 4


@pytest.mark.parametrize('add_self_loops', [False, True])
def test_bipartite_adjacency(add_self_loops):
    edge_index = torch.tensor([[0, 0, 1], [0, 1, 1]])
    adj = bipartite_adjacency(edge_index, 3, 2, add_self_loops).to_dense()
    dense = torch.zeros(5, 5)
    dense[edge_index[0], edge_index[1] + 3] = 1
    dense = dense + dense.t()
    if add_self_loops:
        dense = dense + torch.eye(5)
    degree = dense.sum(1)
    norm = degree.pow(-0.5).masked_fill(degree == 0, 0)
    assert torch.allclose(adj, norm[:, None] * dense * norm[None, :])
