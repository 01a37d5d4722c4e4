import pytest
import torch

from diffkg_pyg.csr import to_csr
from diffkg_pyg.data import (
    KG,
    USER_ITEM,
    RunGraph,
    bipartite_adjacency,
    synthetic_dataset,
)


@pytest.fixture(scope='module')
def data():
    return synthetic_dataset(num_users=20, num_items=30, num_clusters=3,
                             attributes_per_cluster=3,
                             interactions_per_user=5, seed=2)


@pytest.mark.parametrize('self_loops', [False, True])
def test_adjacency_built_once_per_choice(data, self_loops):
    graph = RunGraph.from_data(data)
    adj = graph.adjacency(self_loops)
    assert graph.adjacency(self_loops) is adj
    expected = bipartite_adjacency(data[USER_ITEM].edge_index, 20, 30,
                                   add_self_loops=self_loops)
    assert torch.equal(adj.to_dense(), expected.to_dense())
    assert graph.adjacency(not self_loops) is not adj


def test_kg_forms(data):
    graph = RunGraph.from_data(data)
    assert graph.kg[0] is data[KG].edge_index
    ptr, col = graph.kg_csr
    expected = to_csr(data[KG].edge_index, data['entity'].num_nodes)
    assert torch.equal(ptr, expected[0]) and torch.equal(col, expected[1])
    heads = data[KG].edge_index[0].unique()
    assert torch.equal(graph.kg_heads, heads)
    assert graph.kg_csr is graph.kg_csr
    user_ptr, items = graph.train_csr
    assert user_ptr.numel() == 21 and items.numel() == \
        data[USER_ITEM].edge_index.size(1)
    assert graph.to(torch.device('cpu')) is graph
    assert repr(graph).startswith('RunGraph(num_users=20, num_items=30')


def test_no_kg():
    graph = RunGraph(torch.tensor([[0, 1], [1, 0]]), 2, 2)
    assert graph.num_entities == 2
    with pytest.raises(ValueError, match='no knowledge graph'):
        assert graph.kg_csr is None  # (raises first)
    with pytest.raises(ValueError, match='together'):
        RunGraph(torch.tensor([[0], [0]]), 1, 1, torch.tensor([[0], [0]]))
