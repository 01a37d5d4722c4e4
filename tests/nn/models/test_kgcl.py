r"""KGCL against a literal transcription of the authors' code
(``code/model.py``: view_computer_all, bpr_loss, calc_kg_loss_transE;
``code/contrast.py``: info_nce_loss_overall, the weighted keep
probabilities; ``code/dataloader.py``: get_kg_dict), forward and
gradients."""
import pytest
import torch
import torch.nn.functional as F

from diffkg_pyg.data.graph import bipartite_adjacency
from diffkg_pyg.nn.models import KGCL
from diffkg_pyg.nn.models.kgcl import item_slots, keep_probabilities
from tests.helpers import assert_same_gradients
from tests.nn.conv.test_kgcl_conv import literal_forward_relation


def _L2_loss_mean(x):
    return torch.mean(torch.sum(torch.pow(x, 2), dim=1, keepdim=False) / 2.)


def literal_get_kg_dict(triplets, item_num, entity_num, entity_count,
                        relation_count):
    kg_dict = {}
    for h, r, t in triplets.t().tolist():
        kg_dict.setdefault(h, []).append((r, t))
    i2es, i2rs = {}, {}
    for item in range(item_num):
        rts = kg_dict.get(item, False)
        if rts:
            tails = list(map(lambda x: x[1], rts))
            relations = list(map(lambda x: x[0], rts))
            if len(tails) > entity_num:
                i2es[item] = torch.IntTensor(tails)[:entity_num]
                i2rs[item] = torch.IntTensor(relations)[:entity_num]
            else:
                tails.extend([entity_count] * (entity_num - len(tails)))
                relations.extend([relation_count] *
                                 (entity_num - len(relations)))
                i2es[item] = torch.IntTensor(tails)
                i2rs[item] = torch.IntTensor(relations)
        else:
            i2es[item] = torch.IntTensor([entity_count] * entity_num)
            i2rs[item] = torch.IntTensor([relation_count] * entity_num)
    return i2es, i2rs


def literal_view_computer_all(model, graph, kg, item2relations):
    # cal_item_embedding_rgat (its GAT in eval mode) and the LightGCN mean.
    item_entities = torch.stack(list(kg.values())).long()
    item_relations = torch.stack(list(item2relations.values())).long()
    item_embs = model.item_emb[torch.tensor(list(kg.keys()))]
    entity_embs = model.entity_emb[item_entities]
    relation_embs = model.relation_emb[item_relations]
    padding_mask = torch.where(item_entities != model.num_entities,
                               torch.ones_like(item_entities),
                               torch.zeros_like(item_entities)).float()
    items_emb = literal_forward_relation(model.conv, item_embs, entity_embs,
                                         relation_embs, padding_mask)
    all_emb = torch.cat([model.user_emb, items_emb])
    embs = [all_emb]
    for _ in range(model.num_layers):
        all_emb = torch.sparse.mm(graph, all_emb)
        embs.append(all_emb)
    light_out = torch.mean(torch.stack(embs, dim=1), dim=1)
    return torch.split(light_out, [model.num_users, model.num_items])


def literal_bpr_loss(model, users_emb, pos_emb, neg_emb, users, pos, neg,
                     decay):
    userEmb0, posEmb0, negEmb0 = (model.user_emb[users], model.item_emb[pos],
                                  model.item_emb[neg])
    reg_loss = (1 / 2) * (userEmb0.norm(2).pow(2) + posEmb0.norm(2).pow(2) +
                          negEmb0.norm(2).pow(2)) / float(len(users))
    pos_scores = torch.sum(torch.mul(users_emb, pos_emb), dim=1)
    neg_scores = torch.sum(torch.mul(users_emb, neg_emb), dim=1)
    loss = torch.sum(F.softplus(-(pos_scores - neg_scores)))
    return loss + reg_loss * decay


def literal_info_nce(z1, z2, z_all, tau):
    def f(x):
        return torch.exp(x / tau)
    between_sim = f(F.cosine_similarity(z1, z2))
    all_sim = f(torch.mm(F.normalize(z1), F.normalize(z_all).t()))
    return torch.sum(-torch.log(between_sim / torch.sum(all_sim, 1)))


def literal_transe(model, h, r, pos_t, neg_t):
    r_embed = model.relation_emb[r]
    h_embed = model.item_emb[h]
    pos_t_embed, neg_t_embed = model.entity_emb[pos_t], model.entity_emb[neg_t]
    pos_score = torch.sum(torch.pow(h_embed + r_embed - pos_t_embed, 2),
                          dim=1)
    neg_score = torch.sum(torch.pow(h_embed + r_embed - neg_t_embed, 2),
                          dim=1)
    kg_loss = torch.mean((-1.0) * F.logsigmoid(neg_score - pos_score))
    l2_loss = _L2_loss_mean(h_embed) + _L2_loss_mean(r_embed) + \
        _L2_loss_mean(pos_t_embed) + _L2_loss_mean(neg_t_embed)
    return kg_loss + 1e-3 * l2_loss


def small(seed):
    gen = torch.Generator().manual_seed(seed)
    num_users, num_items, num_entities, num_relations = 5, 7, 12, 3
    triplets = torch.unique(torch.stack([
        torch.randint(num_items - 1, (30, ), generator=gen),  # Item 6: none.
        torch.randint(num_relations, (30, ), generator=gen),
        torch.randint(num_entities, (30, ), generator=gen)]), dim=1)
    pairs = torch.unique(torch.stack([
        torch.randint(num_users, (20, ), generator=gen),
        torch.randint(num_items, (20, ), generator=gen)]), dim=1)
    return num_users, num_items, num_entities, num_relations, triplets, pairs


@pytest.mark.parametrize('seed', [0, 1])
@pytest.mark.parametrize('num_slots', [2, 6])
def test_slots_forward_and_losses_match_the_authors(seed, num_slots):
    num_users, num_items, num_entities, num_relations, triplets, pairs = \
        small(seed)
    entity, relation = item_slots(triplets, num_items, num_slots,
                                  num_entities, num_relations)
    i2es, i2rs = literal_get_kg_dict(triplets, num_items, num_slots,
                                     num_entities, num_relations)
    assert entity.tolist() == torch.stack(list(i2es.values())).tolist()
    assert relation.tolist() == torch.stack(list(i2rs.values())).tolist()

    torch.manual_seed(seed)
    model = KGCL(num_users, num_items, num_entities, num_relations,
                 embedding_dim=6, num_layers=2).double().eval()
    adj = bipartite_adjacency(pairs, num_users, num_items)
    graph = adj.to_sparse_coo().double()
    user_out, item_out = model(adj.double(), entity, relation)
    expected_user, expected_item = literal_view_computer_all(
        model, graph, i2es, i2rs)
    assert torch.allclose(user_out, expected_user, atol=1e-12)
    assert torch.allclose(item_out, expected_item, atol=1e-12)

    users, pos, neg = pairs[0], pairs[1], (pairs[1] + 2) % num_items
    loss, _ = model.bpr_loss(user_out, item_out, users, pos, neg, 0.1)
    expected = literal_bpr_loss(model, expected_user[users],
                                expected_item[pos], expected_item[neg],
                                users, pos, neg, 0.1)
    ssl = model.info_nce(user_out[users], user_out.flip(0)[users], user_out,
                         0.2)
    expected_ssl = literal_info_nce(expected_user[users],
                                    expected_user.flip(0)[users],
                                    expected_user, 0.2)
    h, r, t = triplets
    transe = model.transe_loss(h, r, t, t.flip(0))  # kg_l2_weight 1e-3
    expected_transe = literal_transe(model, h, r, t, t.flip(0))
    for ours, theirs in ((loss, expected), (ssl, expected_ssl),
                         (transe, expected_transe)):
        assert_same_gradients(ours, theirs, list(model.parameters()))


@pytest.mark.parametrize('size', [None, 40.0])
def test_the_joint_loss_is_the_authors_sum(size):
    # BPR on the main graph plus ssl_weight times the users' and items'
    # InfoNCE between two views (the authors' Procedure.py), in float64.
    num_users, num_items, num_entities, num_relations, triplets, pairs = \
        small(0)
    torch.manual_seed(0)
    model = KGCL(num_users, num_items, num_entities, num_relations,
                 embedding_dim=6, num_layers=2, kg_drop=0.5).double().eval()
    slots = item_slots(triplets, num_items, 4, num_entities, num_relations)
    gen = torch.Generator().manual_seed(1)
    adj = bipartite_adjacency(pairs, num_users, num_items).double()
    kgs = [model.kg_view(*slots, gen) for _ in range(2)]
    assert not torch.equal(kgs[0][0], kgs[1][0])
    views = [(adj, kgs[0]), (bipartite_adjacency(pairs[:, 1:], num_users,
                                                 num_items).double(), kgs[1])]
    user, pos, neg = pairs[0], pairs[1], (pairs[1] + 2) % num_items
    loss, bpr, ssl = model.loss(adj, slots, views, user, pos, neg,
                                l2_weight=0.1, ssl_weight=0.3,
                                temperature=0.4, batch_size=size)
    u, i = model(adj, *slots)
    (u1, i1), (u2, i2) = (model(g, *kg) for g, kg in views)
    scale = 1.0 if size is None else size / user.numel()
    expected_bpr = literal_bpr_loss(model, u[user], i[pos], i[neg], user,
                                    pos, neg, 0.0) * scale
    expected_ssl = (literal_info_nce(u1[user], u2[user], u2, 0.4) +
                    literal_info_nce(i1[pos], i2[pos], i2, 0.4)) * scale
    assert torch.allclose(bpr, expected_bpr, atol=1e-12)
    assert torch.allclose(ssl, expected_ssl, atol=1e-12)
    l2 = (literal_bpr_loss(model, u[user], i[pos], i[neg], user, pos, neg,
                           1.0) - literal_bpr_loss(
        model, u[user], i[pos], i[neg], user, pos, neg, 0.0))
    assert torch.allclose(loss, expected_bpr + 0.1 * l2 + 0.3 * expected_ssl,
                          atol=1e-12)


def test_kgcl_arguments():
    model = KGCL(3, 4, 5, 2, embedding_dim=8)
    assert model.entity_emb.shape == (6, 8)  # The padding entity.
    assert model.relation_emb.shape == (3, 8)
    assert repr(model) == ('KGCL(3, 4, 5, 2, embedding_dim=8, '
                           'num_layers=3)')
    for kwargs, message in ((dict(kg_dropout=1.0), 'kg_dropout must be in'),
                            (dict(augmentation='x'), 'augmentation must be'),
                            (dict(num_layers=-1), 'num_layers must be')):
        with pytest.raises(ValueError, match=f'KGCL: {message}'):
            KGCL(3, 4, 5, 2, **kwargs)


def literal_weights(item_stabilities, ui_p_drop):
    # The authors' get_ui_views_weighted up to the Bernoulli draw.
    item_stabilities = torch.exp(item_stabilities)
    kg_weights = (item_stabilities - item_stabilities.min()) / \
        (item_stabilities.max() - item_stabilities.min())
    kg_weights = kg_weights.where(kg_weights > 0.3,
                                  torch.ones_like(kg_weights) * 0.3)
    weights = (1 - ui_p_drop) / torch.mean(kg_weights) * (kg_weights)
    return weights.where(weights < 0.95, torch.ones_like(weights) * 0.95)


@pytest.mark.parametrize('ui_drop', [0.05, 0.4])
def test_keep_probabilities_match_the_authors(ui_drop):
    stability = torch.rand(50, generator=torch.Generator().manual_seed(0))
    assert torch.equal(keep_probabilities(stability, ui_drop),
                       literal_weights(stability, ui_drop))
