r"""KGIN against a literal transcription of the authors' code
(``modules/KGIN.py``: GraphConv, its independence losses and
create_bpr_loss), forward and gradients."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from diffkg_pyg.nn.models import KGIN
from diffkg_pyg.train.recipes.kgin import kgin_edges
from tests.helpers import assert_same_gradients
from tests.nn.conv.test_kgin_conv import literal_aggregator


def literal_cor(disen_weight_att, ind, temperature=0.2):
    # The authors' GraphConv._cul_cor.
    def CosineSimilarity(tensor_1, tensor_2):
        normalized_tensor_1 = tensor_1 / tensor_1.norm(dim=0, keepdim=True)
        normalized_tensor_2 = tensor_2 / tensor_2.norm(dim=0, keepdim=True)
        return (normalized_tensor_1 * normalized_tensor_2).sum(dim=0) ** 2

    def DistanceCorrelation(tensor_1, tensor_2):
        channel = tensor_1.shape[0]
        # The authors' .to(device), here .to(dtype): the tests run in
        # float64, where the two orders of summation agree to 1e-12.
        zeros = torch.zeros(channel, channel).to(tensor_1)
        zero = torch.zeros(1).to(tensor_1)
        tensor_1, tensor_2 = tensor_1.unsqueeze(-1), tensor_2.unsqueeze(-1)
        a_, b_ = torch.matmul(tensor_1, tensor_1.t()) * 2, \
            torch.matmul(tensor_2, tensor_2.t()) * 2
        tensor_1_square, tensor_2_square = tensor_1 ** 2, tensor_2 ** 2
        a, b = torch.sqrt(torch.max(tensor_1_square - a_ +
                                    tensor_1_square.t(), zeros) + 1e-8), \
            torch.sqrt(torch.max(tensor_2_square - b_ + tensor_2_square.t(),
                                 zeros) + 1e-8)
        A = a - a.mean(dim=0, keepdim=True) - a.mean(dim=1, keepdim=True) + \
            a.mean()
        B = b - b.mean(dim=0, keepdim=True) - b.mean(dim=1, keepdim=True) + \
            b.mean()
        dcov_AB = torch.sqrt(torch.max((A * B).sum() / channel ** 2, zero) +
                             1e-8)
        dcov_AA = torch.sqrt(torch.max((A * A).sum() / channel ** 2, zero) +
                             1e-8)
        dcov_BB = torch.sqrt(torch.max((B * B).sum() / channel ** 2, zero) +
                             1e-8)
        return dcov_AB / torch.sqrt(dcov_AA * dcov_BB + 1e-8)

    def MutualInformation():
        disen_T = disen_weight_att.t()
        normalized_disen_T = disen_T / disen_T.norm(dim=1, keepdim=True)
        pos_scores = torch.sum(normalized_disen_T * normalized_disen_T,
                               dim=1)
        ttl_scores = torch.sum(torch.mm(disen_T, disen_weight_att), dim=1)
        pos_scores = torch.exp(pos_scores / temperature)
        ttl_scores = torch.exp(ttl_scores / temperature)
        return - torch.sum(torch.log(pos_scores / ttl_scores))

    if ind == 'mi':
        return MutualInformation()
    cor = 0
    n_factors = disen_weight_att.shape[0]
    for i in range(n_factors):
        for j in range(i + 1, n_factors):
            if ind == 'distance':
                cor += DistanceCorrelation(disen_weight_att[i],
                                           disen_weight_att[j])
            else:
                cor += CosineSimilarity(disen_weight_att[i],
                                        disen_weight_att[j])
    return cor


def literal_graph_conv(model, edge_index, edge_type, interact_mat):
    # The authors' GraphConv.forward without dropout (their generate()).
    entity_emb, user_emb = model.entity_emb, model.user_emb
    entity_res_emb, user_res_emb = entity_emb, user_emb
    for _ in range(model.num_layers):
        entity_emb, user_emb = literal_aggregator(
            entity_emb, user_emb, model.latent_emb, edge_index, edge_type,
            interact_mat, model.relation_emb, model.intent_weight)
        entity_emb = F.normalize(entity_emb)
        user_emb = F.normalize(user_emb)
        entity_res_emb = torch.add(entity_res_emb, entity_emb)
        user_res_emb = torch.add(user_res_emb, user_emb)
    return entity_res_emb, user_res_emb


def literal_bpr_loss(users, pos_items, neg_items, cor, decay, sim_decay):
    batch_size = users.shape[0]
    pos_scores = torch.sum(torch.mul(users, pos_items), axis=1)
    neg_scores = torch.sum(torch.mul(users, neg_items), axis=1)
    mf_loss = -1 * torch.mean(nn.LogSigmoid()(pos_scores - neg_scores))
    regularizer = (torch.norm(users) ** 2 + torch.norm(pos_items) ** 2 +
                   torch.norm(neg_items) ** 2) / 2
    emb_loss = decay * regularizer / batch_size
    return mf_loss + emb_loss + sim_decay * cor, mf_loss


def small_graph(seed):
    gen = torch.Generator().manual_seed(seed)
    num_users, num_items, num_entities, base = 6, 8, 14, 3
    triplets = torch.unique(torch.stack([
        torch.randint(num_items, (30, ), generator=gen),
        torch.randint(base, (30, ), generator=gen),
        torch.randint(num_items, num_entities, (30, ), generator=gen)]),
        dim=1)
    pairs = torch.unique(torch.stack([
        torch.randint(num_users, (25, ), generator=gen),
        torch.randint(num_items, (25, ), generator=gen)]), dim=1)
    pairs = torch.cat([pairs, torch.stack([torch.arange(num_users),
                                           torch.zeros(num_users).long()])],
                      dim=1).unique(dim=1)  # Every user has an item.
    return num_users, num_entities, 2 * base, triplets, pairs


@pytest.mark.parametrize('ind', ['distance', 'cosine', 'mi'])
@pytest.mark.parametrize('seed', [0, 1])
def test_independence_matches_the_authors(ind, seed):
    torch.manual_seed(seed)
    model = KGIN(3, 5, 6, embedding_dim=4, num_intents=4,
                 independence=ind).double()
    model.intent_weight.data.normal_()
    loss = model.independence_loss()
    expected = literal_cor(model.intent_weight, ind)
    assert torch.allclose(loss, expected.reshape(()), atol=1e-10)
    grad, = torch.autograd.grad(loss, model.intent_weight)
    expected_grad, = torch.autograd.grad(expected.sum(), model.intent_weight)
    assert torch.allclose(grad, expected_grad, atol=1e-10)


@pytest.mark.parametrize('seed', [0, 1])
@pytest.mark.parametrize('num_layers', [1, 3])
def test_forward_and_loss_match_the_authors(seed, num_layers):
    num_users, num_entities, num_relations, triplets, pairs = \
        small_graph(seed)
    torch.manual_seed(seed)
    model = KGIN(num_users, num_entities, num_relations, embedding_dim=8,
                 num_layers=num_layers, num_intents=3).double().eval()
    kg = kgin_edges(triplets, num_relations)
    user_out, entity_out = model(pairs, kg[:2], kg[2])

    degree = torch.bincount(pairs[0], minlength=num_users).float()
    interact = torch.sparse_coo_tensor(pairs, 1.0 / degree[pairs[0]].double(),
                                       (num_users, num_entities),
                                       check_invariants=True)
    expected_entity, expected_user = literal_graph_conv(model, kg[:2], kg[2],
                                                        interact)
    assert torch.allclose(entity_out, expected_entity, atol=1e-10)
    assert torch.allclose(user_out, expected_user, atol=1e-10)

    user, pos, neg = pairs[0, :5], pairs[1, :5], torch.arange(5) + 1
    loss, bpr, _ = model.loss(user_out, entity_out, user, pos, neg,
                              l2_weight=1e-2, independence_weight=1e-1)
    expected, expected_bpr = literal_bpr_loss(
        expected_user[user], expected_entity[pos], expected_entity[neg],
        literal_cor(model.intent_weight, 'distance'), 1e-2, 1e-1)
    assert torch.allclose(bpr, expected_bpr, atol=1e-10)
    assert_same_gradients(loss, expected, list(model.parameters()))


def test_kgin_edges_keep_every_relation_of_a_pair():
    triplets = torch.tensor([[0, 0], [0, 1], [5, 5]])  # (0,0,5), (0,1,5).
    kg = kgin_edges(triplets, num_relations=4)
    assert kg.tolist() == [[0, 0, 5, 5], [5, 5, 0, 0], [0, 1, 2, 3]]


def test_node_dropout_keeps_the_authors_fractions():
    num_users, num_entities, num_relations, triplets, pairs = small_graph(0)
    model = KGIN(num_users, num_entities, num_relations, node_dropout=0.3)
    kg = kgin_edges(triplets, num_relations)
    torch.manual_seed(0)
    weight = torch.ones(20000)
    many = torch.zeros(2, 20000, dtype=torch.long)
    _, kept_weight, kg_index, kg_type = model._drop_edges(
        many, weight, kg[:2], kg[2], None)
    # KG: exactly floor(0.3 E) edges kept; user-item: each kept with
    # probability 0.3, scaled by 1 / (1 - 0.3).
    assert kg_index.size(1) == kg_type.numel() == int(kg.size(1) * 0.3)
    assert abs(kept_weight.numel() / 20000 - 0.3) < 0.02
    assert torch.allclose(kept_weight, torch.full_like(kept_weight, 1 / 0.7))


def test_node_dropout_draws_from_the_given_generator():
    # The same seed twice gives the same dropped graph and the same
    # outputs, and the global generator is left where it was (message
    # dropout off: it draws from the global generator, as torch's does).
    num_users, num_entities, num_relations, triplets, pairs = small_graph(0)
    model = KGIN(num_users, num_entities, num_relations, node_dropout=0.5,
                 dropout=0.0).train()
    kg = kgin_edges(triplets, num_relations)
    before = torch.get_rng_state()
    outs = [model(pairs, kg[:2], kg[2], torch.Generator().manual_seed(s))
            for s in (3, 3, 4)]
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(a, b) for a, b in zip(outs[0], outs[1]))
    assert not torch.equal(outs[0][0], outs[2][0])


def test_initialisation_bounds_and_options():
    model = KGIN(100, 300, 4, embedding_dim=16)
    bound = math.sqrt(6.0 / (400 + 16))
    for table in (model.user_emb, model.entity_emb):
        assert table.abs().max() <= bound
        assert table.abs().max() > 0.9 * bound
    assert repr(model) == ('KGIN(100, 300, 4, embedding_dim=16, '
                           'num_layers=3, num_intents=4)')
    paper = KGIN(3, 5, 4, intent_attention='intents', user_residual=False,
                 independence_on='intents')
    assert not paper.conv.user_residual
    assert torch.isfinite(paper.independence_loss())


@pytest.mark.parametrize('kwargs,match', [
    (dict(num_layers=0), 'KGIN: num_layers must be >= 1'),
    (dict(node_dropout=1.0), r'KGIN: node_dropout must be in \[0, 1\)'),
    (dict(independence='l1'), 'KGIN: independence must be one of'),
    (dict(intent_attention='x'), 'KGIN: intent_attention must be one of'),
    (dict(mi_temperature=0.0), 'KGIN: mi_temperature must be > 0'),
    (dict(num_users=0), "'num_users' must be >= 1"),
])
def test_kgin_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KGIN(**{'num_users': 3, 'num_entities': 4, 'num_relations': 2,
                **kwargs})
