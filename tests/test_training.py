import pytest
import torch

from diffkg_pyg.data import USER_ITEM, synthetic_dataset
from diffkg_pyg.training import (
    bipartite_adjacency,
    sample_negative_items,
    train_lightgcn,
)


@pytest.mark.parametrize('seed', [0, 1])
def test_sample_negative_items(seed):
    gen = torch.Generator().manual_seed(seed)
    train = torch.tensor([[0, 0, 0, 1, 2, 2], [0, 1, 2, 3, 0, 4]])
    user = train[0].repeat(50)
    item = sample_negative_items(user, train, 5, gen)
    known = set(map(tuple, train.t().tolist()))
    assert all((u, i) not in known
               for u, i in zip(user.tolist(), item.tolist()))
    assert set(item[user == 0].tolist()) == {3, 4}  # Only ones left.


def test_sample_negative_items_gives_up():
    train = torch.tensor([[0, 0], [0, 1]])
    with pytest.raises(ValueError, match='could not sample'):
        sample_negative_items(torch.tensor([0]), train, 2, max_rounds=3)


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


def test_train_lightgcn_smoke():
    data = synthetic_dataset(num_users=60, num_items=80, num_clusters=4,
                             attributes_per_cluster=4)
    lines = []
    result = train_lightgcn(data, embedding_dim=8, epochs=3, patience=2,
                            max_batches=2, batch_size=64, ks=(5, 20),
                            log=lines.append)
    assert 1 <= result.best_epoch <= result.epochs_run <= 3
    assert set(result.valid) == {'recall@5', 'recall@20', 'ndcg@5',
                                 'ndcg@20'}
    assert all(0.0 <= v <= 1.0 for v in result.test.values())
    assert len(result.history) == result.epochs_run
    assert len([line for line in lines if line.startswith('epoch')]) == \
        result.epochs_run
    assert result.to_dict()['best_epoch'] == result.best_epoch


def test_train_lightgcn_learns_and_is_deterministic():
    data = synthetic_dataset(num_users=200, num_items=150, num_clusters=5)
    kwargs = dict(embedding_dim=16, epochs=15, patience=15, batch_size=256,
                  lr=1e-2, log=lambda line: None)
    first, second = train_lightgcn(data, **kwargs), train_lightgcn(data,
                                                                   **kwargs)
    assert first.test == second.test
    # 20 random items out of 150 would give a recall@20 near 0.13:
    assert first.test['recall@20'] > 0.25


def test_train_lightgcn_needs_validation():
    data = synthetic_dataset(num_users=30, num_items=40, num_clusters=4,
                             attributes_per_cluster=4, val_ratio=0.0)
    assert data[USER_ITEM].val_edge_index.size(1) == 0
    with pytest.raises(ValueError, match='no validation interactions'):
        train_lightgcn(data, epochs=1)
