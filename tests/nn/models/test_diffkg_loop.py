import pytest
import torch

from diffkg_pyg import DiffKG
from diffkg_pyg.data import USER_ITEM, RunGraph, synthetic_dataset
from diffkg_pyg.nn.models import DiffKGLoop
from diffkg_pyg.train.checkpoint import lift_graph_state


@pytest.fixture(scope='module')
def data():
    return synthetic_dataset(num_users=30, num_items=40, num_clusters=4,
                             attributes_per_cluster=3,
                             interactions_per_user=6, seed=0)


def make_loop(data, seed=0, **kwargs):
    torch.manual_seed(0)
    model = DiffKG.from_data(data, denoiser_hidden_channels=16,
                             embedding_dim=8, use_compile=False, **kwargs)
    return DiffKGLoop(model, RunGraph.from_data(data),
                      torch.Generator().manual_seed(seed))


def test_the_model_holds_no_graph(data):
    loop = make_loop(data)
    loop.rebuild(generator=torch.Generator().manual_seed(1))
    keys = set(loop.model.state_dict())
    assert loop.model.state_dict()['_extra_state'] == {}
    other = make_loop(data, seed=5).model
    assert set(other.state_dict()) == keys  # The same keys, no KGs.


@pytest.mark.parametrize('kg_sample_size', [2, -1])
def test_the_kg_is_sampled_once(data, kg_sample_size):
    loop = make_loop(data, kg_sample_size=kg_sample_size)
    assert loop.denoised_kg is loop.sampled_kg  # Until the first rebuild.
    again = make_loop(data, kg_sample_size=kg_sample_size)
    assert all(torch.equal(a, b) for a, b in zip(loop.sampled_kg,
                                                  again.sampled_kg))
    full = loop.graph.kg[0].size(1)
    kept = loop.sampled_kg[0].size(1)
    assert (kept == full) == (kg_sample_size == -1)


def test_recommend(data):
    loop = make_loop(data)
    train = data[USER_ITEM].edge_index
    users = torch.tensor([3, 0, 3])
    item, score = loop.recommend(users, k=5)
    assert loop.model.training  # Scored in evaluation mode, left as it was,
    again = loop.recommend(users, k=5)  # so no dropout varies it.
    assert torch.equal(item, again[0]) and torch.equal(score, again[1])
    assert item.shape == score.shape == (3, 5)
    assert torch.equal(item[0], item[2])
    assert bool((score[:, :-1] >= score[:, 1:]).all())
    seen = set(map(tuple, train.t().tolist()))
    assert not any((int(u), int(i)) in seen
                   for u, row in zip(users, item) for i in row)
    # Without the exclusion, the train items may come back and the scores
    # are the plain dot products of the main view's embeddings:
    loop.model.eval()
    user_emb, item_emb = loop.model.get_embedding(
        loop.graph.adjacency(True),
        *loop.model.eval_kg(loop.sampled_kg, loop.denoised_kg))
    item, score = loop.recommend(users, k=40, exclude_train=False)
    assert torch.allclose(score, (user_emb[users] @ item_emb.t()).sort(
        dim=-1, descending=True).values, atol=1e-6)


@pytest.mark.parametrize('users,k,match', [
    ([0, 30], 5, r"'user_index' must lie in \[0, 29\]"),
    ([-1], 5, r"'user_index' must lie in \[0, 29\]"),
    ([0], 0, r"'k' must be in \[1, num_items\]"),
    ([0], 41, r"'k' must be in \[1, num_items\]"),
])
def test_recommend_bad_arguments(data, users, k, match):
    with pytest.raises(ValueError, match=match):
        make_loop(data).recommend(torch.tensor(users), k=k)


def test_state_round_trip_and_saved_kgs(data):
    loop = make_loop(data)
    loop.rebuild(generator=torch.Generator().manual_seed(1))
    assert not torch.equal(loop.denoised_kg[0], loop.sampled_kg[0])
    other = make_loop(data, seed=7)
    other.load_state_dict(loop.state_dict())
    for mine, theirs in zip(loop.sampled_kg + loop.denoised_kg,
                            other.sampled_kg + other.denoised_kg):
        assert torch.equal(mine, theirs)
    # A saved model's loop needs the train pairs only:
    graph = RunGraph(data[USER_ITEM].edge_index, 30, 40)
    saved = DiffKGLoop(loop.model, graph, kgs=(loop.sampled_kg,
                                               loop.denoised_kg))
    users = torch.arange(5)
    assert all(torch.equal(a, b) for a, b in zip(
        saved.recommend(users, k=5), loop.recommend(users, k=5)))
    with pytest.raises(ValueError, match='no knowledge graph'):
        DiffKGLoop(loop.model, graph)


def test_denoising_loss_reuses_item_user_embeddings(data):
    loop = make_loop(data)
    heads = loop.shuffled_kg_heads(torch.Generator().manual_seed(0))[:4]
    loop.denoising_loss(heads)
    first = loop._item_user[1]
    loop.denoising_loss(heads)
    assert loop._item_user[1] is first  # The user table did not change.
    with torch.no_grad():
        loop.model.user_emb.add_(1.0)
    loop.denoising_loss(heads)
    assert loop._item_user[1] is not first
    assert torch.allclose(loop._item_user[1], loop.model.item_user_embedding(
        data[USER_ITEM].edge_index))


def test_files_of_the_stateful_model_lift_their_kgs():
    kg = [torch.tensor([[0, 1], [1, 0]]), torch.tensor([0, 1])]
    old = {'user_emb': torch.zeros(2),
           '_extra_state': {'sampled_kg': kg, 'denoised_kg': kg,
                            'noise_columns': 7}}
    model_state, recipe_state = lift_graph_state(old, {})
    assert model_state['_extra_state'] == {'noise_columns': 7}
    assert recipe_state == {'sampled_kg': kg, 'denoised_kg': kg}
    assert 'sampled_kg' in old['_extra_state']  # The input is not changed.
    current = {'_extra_state': {'noise_columns': 7}}
    assert lift_graph_state(current, {'a': 1}) == (current, {'a': 1})
