import numpy as np
import pytest
import torch

from diffkg_pyg.data import KG, USER_ITEM, statistics, synthetic_dataset


def test_synthetic_dataset_is_deterministic():
    a, b = synthetic_dataset(seed=3), synthetic_dataset(seed=3)
    for key in (USER_ITEM, KG):
        for name, value in a[key].items():
            other = b[key][name]
            assert (torch.equal(value, other) if torch.is_tensor(value) else
                    value == other)
    c = synthetic_dataset(seed=4)
    assert not torch.equal(a[USER_ITEM].edge_index, c[USER_ITEM].edge_index)


@pytest.mark.parametrize('noise_ratio', [0.0, 0.2, 0.4])
def test_synthetic_noise_is_recorded(noise_ratio):
    data = synthetic_dataset(num_users=50, num_items=200,
                             noise_ratio=noise_ratio)
    kg = data[KG]
    assert kg.is_noise.shape == kg.edge_type.shape
    assert kg.is_noise.dtype == torch.bool
    # Duplicated irrelevant pairs are dropped, so the ratio is approximate
    # and the exact one is recorded:
    assert abs(kg.noise_ratio - noise_ratio) < 0.05
    # Every noise triplet appears as two edges (itself and its inverse):
    num_noise = round(kg.noise_ratio * kg.num_triplets)
    assert int(kg.is_noise.sum()) == 2 * num_noise
    # Planted irrelevant edges link an item to another cluster's attribute:
    num_items = data['item'].num_nodes
    cluster = data['item'].cluster
    item = kg.edge_index.min(dim=0).values
    attribute = kg.edge_index.max(dim=0).values - num_items
    same = cluster[item] == attribute // 12
    assert torch.equal(~same, kg.is_noise)


def test_synthetic_planted_preference():
    data = synthetic_dataset(num_users=200, num_items=400)
    user, item = data[USER_ITEM].edge_index
    cluster = data['item'].cluster[item].numpy()
    # Share of each user's interactions in the user's most common cluster:
    counts = np.zeros((200, 10))
    np.add.at(counts, (user.numpy(), cluster), 1)
    share = counts.max(axis=1) / counts.sum(axis=1)
    assert share.mean() > 0.6  # Uniform choice would give about 0.2.
    stats = statistics(data)
    assert stats['num_users'] == 200 and stats['num_items'] == 400
    assert stats['num_entities'] == 400 + 10 * 12
    assert stats['num_val'] > 0 and stats['num_test'] > 0


@pytest.mark.parametrize('kwargs,match', [
    (dict(noise_ratio=1.0), 'noise_ratio'),
    (dict(preference_strength=1.5), 'preference_strength'),
    (dict(attributes_per_item=20), 'attributes_per_item'),
    (dict(num_items=5), 'num_items'),
])
def test_synthetic_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthetic_dataset(**kwargs)
