import numpy as np
import torch
from torch_geometric.data import HeteroData

from diffkg_pyg.data.graph import KG, build_hetero_data
from diffkg_pyg.data.io import InteractionFile, TripletFile
from diffkg_pyg.data.split import validation_mask

__all__ = ['synthetic_dataset']


def synthetic_dataset(
    num_users: int = 800,
    num_items: int = 1000,
    num_clusters: int = 10,
    attributes_per_cluster: int = 12,
    num_relations: int = 4,
    attributes_per_item: int = 3,
    noise_ratio: float = 0.25,
    interactions_per_user: int = 16,
    preference_strength: float = 0.8,
    test_ratio: float = 0.2,
    val_ratio: float = 0.1,
    seed: int = 0,
) -> HeteroData:
    r"""Generates a small knowledge-aware recommendation dataset with planted
    structure, in the layout of :func:`~diffkg_pyg.data.build_hetero_data`.

    Items belong to latent clusters; every cluster owns
    :obj:`attributes_per_cluster` attribute entities (ids after the items),
    each with a relation type. The knowledge graph links every item to
    :obj:`attributes_per_item` attributes of its own cluster (relevant
    triplets) and holds a fraction :obj:`noise_ratio` of planted irrelevant
    triplets linking items to attributes of other clusters. Every user
    prefers one cluster and draws a fraction :obj:`preference_strength` of
    its interactions from it (the rest uniformly), so items that share KG
    attributes share users: a knowledge-aware model can exploit the relevant
    triplets, and the irrelevant ones carry no signal.

    The graph additionally stores ``data['entity', 'relation',
    'entity'].is_noise`` (a boolean per KG edge, :obj:`True` for the edges of
    planted irrelevant triplets and their inverses), ``noise_ratio`` on the
    same store (the exact fraction of irrelevant triplets), and
    ``data['item'].cluster``.

    Args:
        num_users (int, optional): Number of users. (default: :obj:`800`)
        num_items (int, optional): Number of items. (default: :obj:`1000`)
        num_clusters (int, optional): Number of latent item clusters.
            (default: :obj:`10`)
        attributes_per_cluster (int, optional): Attribute entities per
            cluster. (default: :obj:`12`)
        num_relations (int, optional): Number of relation types (before
            inverses). (default: :obj:`4`)
        attributes_per_item (int, optional): Relevant triplets per item.
            (default: :obj:`3`)
        noise_ratio (float, optional): Fraction of the triplets that are
            planted irrelevant ones, in :obj:`[0, 1)`. (default: :obj:`0.25`)
        interactions_per_user (int, optional): Interactions drawn per user
            (duplicates collapse). (default: :obj:`16`)
        preference_strength (float, optional): Probability that an
            interaction comes from the user's preferred cluster.
            (default: :obj:`0.8`)
        test_ratio (float, optional): Fraction of every user's interactions
            held out for testing. (default: :obj:`0.2`)
        val_ratio (float, optional): Fraction of every user's remaining
            interactions held out for validation. (default: :obj:`0.1`)
        seed (int, optional): The random seed. (default: :obj:`0`)
    """
    if not 0.0 <= noise_ratio < 1.0:
        raise ValueError(
            f"'noise_ratio' must lie in [0, 1) (got {noise_ratio})")
    if not 0.0 <= preference_strength <= 1.0:
        raise ValueError(f"'preference_strength' must lie in [0, 1] (got "
                         f"{preference_strength})")
    if attributes_per_item > attributes_per_cluster:
        raise ValueError(
            f"'attributes_per_item' ({attributes_per_item}) cannot exceed "
            f"'attributes_per_cluster' ({attributes_per_cluster})")
    if num_items < num_clusters:
        raise ValueError(f"'num_items' ({num_items}) must be at least "
                         f"'num_clusters' ({num_clusters})")
    rng = np.random.default_rng(seed)
    num_attributes = num_clusters * attributes_per_cluster
    num_entities = num_items + num_attributes

    # Every cluster gets at least one item:
    cluster = np.concatenate([
        np.arange(num_clusters),
        rng.integers(0, num_clusters, num_items - num_clusters)
    ])
    rng.shuffle(cluster)
    attribute_relation = rng.integers(0, num_relations, num_attributes)

    # Relevant triplets: attributes of the item's own cluster, no repeats.
    choice = np.argsort(rng.random((num_items, attributes_per_cluster)),
                        axis=1)[:, :attributes_per_item]
    attribute = cluster[:, None] * attributes_per_cluster + choice
    relevant_head = np.repeat(np.arange(num_items), attributes_per_item)
    relevant_tail = attribute.reshape(-1)

    # Irrelevant triplets: attributes of another cluster.
    num_noise = int(round(noise_ratio / (1.0 - noise_ratio) *
                          relevant_head.size))
    noise_head = rng.integers(0, num_items, num_noise)
    shift = rng.integers(1, num_clusters, num_noise) if num_clusters > 1 \
        else np.zeros(num_noise, dtype=np.int64)
    noise_cluster = (cluster[noise_head] + shift) % num_clusters
    noise_tail = (noise_cluster * attributes_per_cluster +
                  rng.integers(0, attributes_per_cluster, num_noise))
    # Drop repeated irrelevant pairs (relevant and irrelevant never meet):
    key = np.unique(noise_head * num_attributes + noise_tail)
    noise_head, noise_tail = key // num_attributes, key % num_attributes

    head = np.concatenate([relevant_head, noise_head])
    tail = np.concatenate([relevant_tail, noise_tail]) + num_items
    relation = attribute_relation[tail - num_items]
    is_noise_triplet = np.zeros(head.size, dtype=bool)
    is_noise_triplet[relevant_head.size:] = True

    # Interactions: a preferred cluster per user.
    preferred = rng.integers(0, num_clusters, num_users)
    order = np.argsort(cluster, kind='stable')
    start = np.searchsorted(cluster[order], np.arange(num_clusters))
    size = np.bincount(cluster, minlength=num_clusters)
    user = np.repeat(np.arange(num_users), interactions_per_user)
    from_preferred = rng.random(user.size) < preference_strength
    offset = (rng.random(user.size) * size[preferred[user]]).astype(np.int64)
    item = np.where(from_preferred,
                    order[start[preferred[user]] + offset],
                    rng.integers(0, num_items, user.size))
    key = np.unique(user * num_items + item)
    user, item = key // num_items, key % num_items
    is_test = validation_mask(user, test_ratio, seed + 1)

    def interactions(mask):
        return InteractionFile('<synthetic>', user[mask], item[mask])

    triplets = TripletFile('<synthetic>', head, relation, tail,
                           np.arange(head.size) + 1)
    data = build_hetero_data(interactions(~is_test), interactions(is_test),
                             triplets, val_ratio, seed, name='synthetic')

    store = data[KG]
    edge_item = store.edge_index.min(dim=0).values.numpy()
    edge_attribute = store.edge_index.max(dim=0).values.numpy()
    noise_key = head[is_noise_triplet] * num_entities + tail[is_noise_triplet]
    store.is_noise = torch.from_numpy(
        np.isin(edge_item * num_entities + edge_attribute, noise_key))
    store.noise_ratio = float(is_noise_triplet.mean())
    data['item'].cluster = torch.from_numpy(cluster)
    return data
