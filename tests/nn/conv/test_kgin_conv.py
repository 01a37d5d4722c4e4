r"""KGINConv against a literal transcription of the authors' Aggregator
(``modules/KGIN.py``), forward and gradients."""
import pytest
import torch
from torch import nn
from torch_geometric.utils import scatter

from diffkg_pyg.nn import KGINConv


def literal_aggregator(entity_emb, user_emb, latent_emb, edge_index,
                       edge_type, interact_mat, weight, disen_weight_att):
    # The authors' Aggregator.forward; their edge types count 'interact'
    # as 0, so they index weight[edge_type - 1]: here edge_type + 1.
    n_entities, channel = entity_emb.shape
    n_users, n_factors = user_emb.shape[0], latent_emb.shape[0]
    head, tail = edge_index
    edge_relation_emb = weight[(edge_type + 1) - 1]
    neigh_relation_emb = entity_emb[tail] * edge_relation_emb
    entity_agg = scatter(neigh_relation_emb, head, 0, dim_size=n_entities,
                         reduce='mean')  # torch_scatter's scatter_mean
    score_ = torch.mm(user_emb, latent_emb.t())
    score = nn.Softmax(dim=1)(score_).unsqueeze(-1)
    user_agg = torch.sparse.mm(interact_mat, entity_emb)
    disen_weight = torch.mm(nn.Softmax(dim=-1)(disen_weight_att),
                            weight).expand(n_users, n_factors, channel)
    user_agg = user_agg * (disen_weight * score).sum(dim=1) + user_agg
    return entity_agg, user_agg


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('num_kg_edges', [1, 60])
def test_kgin_conv_matches_the_authors_aggregator(seed, num_kg_edges):
    torch.manual_seed(seed)
    num_users, num_entities, num_relations, dim, factors = 5, 12, 6, 8, 3
    x = torch.randn(num_entities, dim, requires_grad=True)
    user_x = torch.randn(num_users, dim, requires_grad=True)
    latent = torch.randn(factors, dim, requires_grad=True)
    weight = torch.randn(num_relations, dim, requires_grad=True)
    att = torch.randn(factors, num_relations, requires_grad=True)
    edge_index = torch.randint(num_entities, (2, num_kg_edges))
    edge_type = torch.randint(num_relations, (num_kg_edges, ))
    # User-item pairs (items are the first 7 entities) with the mean
    # weights of the authors' interact_mat, some dropped and rescaled.
    pairs = torch.unique(torch.stack([torch.randint(num_users, (20, )),
                                      torch.randint(7, (20, ))]), dim=1)
    degree = torch.bincount(pairs[0], minlength=num_users).float()
    values = 2.0 / degree[pairs[0]]
    interact = torch.sparse_coo_tensor(pairs, values,
                                       (num_users, num_entities),
                                       check_invariants=True)

    conv = KGINConv()
    out, user_out = conv(x, user_x, edge_index, edge_type, weight, pairs,
                         values, torch.softmax(att, -1) @ weight, latent)
    expected, expected_user = literal_aggregator(
        x, user_x, latent, edge_index, edge_type, interact, weight, att)
    assert out.shape == (num_entities, dim)
    assert user_out.shape == (num_users, dim)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(user_out, expected_user, atol=1e-5)
    inputs = (x, user_x, latent, weight, att)
    grad_out, grad_user = torch.randn_like(out), torch.randn_like(user_out)
    grads = torch.autograd.grad((out, user_out), inputs,
                                (grad_out, grad_user))
    expected_grads = torch.autograd.grad((expected, expected_user), inputs,
                                         (grad_out, grad_user))
    for grad, expected_grad in zip(grads, expected_grads):
        assert torch.allclose(grad, expected_grad, atol=1e-4)


def test_kgin_conv_without_the_residual_is_the_papers_form():
    torch.manual_seed(0)
    x, user_x = torch.randn(4, 3), torch.randn(2, 3)
    intents, keys = torch.randn(2, 3), torch.randn(2, 3)
    pairs, weight = torch.tensor([[0, 0, 1], [0, 1, 3]]), torch.ones(3)
    empty = torch.empty(2, 0, dtype=torch.long)
    relation, no_type = torch.randn(1, 3), torch.empty(0, dtype=torch.long)
    _, with_res = KGINConv()(x, user_x, empty, no_type, relation, pairs,
                             weight, intents, keys)
    out, without = KGINConv(user_residual=False)(
        x, user_x, empty, no_type, relation, pairs, weight, intents, keys)
    mean = torch.stack([x[0] + x[1], x[3]])
    assert torch.allclose(with_res - without, mean, atol=1e-6)
    assert torch.equal(out, torch.zeros(4, 3))  # No KG edge: zero mean.
    assert repr(KGINConv(False)) == 'KGINConv(user_residual=False)'
