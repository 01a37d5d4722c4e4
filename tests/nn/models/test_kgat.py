r"""KGAT against a literal transcription of its PyTorch port
(``model/KGAT.py``: calc_cf_embeddings, calc_cf_loss, calc_kg_loss,
update_attention; ``data_loader/loader_kgat.py``: the random-walk
Laplacian), forward and gradients."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from diffkg_pyg.nn.models import KGAT
from diffkg_pyg.nn.models.kgat import collaborative_kg
from diffkg_pyg.train.recipes.kgat import sample_kg_batch, sample_user_batch
from diffkg_pyg.train.recipes.kgin import kgin_edges
from tests.helpers import assert_same_gradients
from tests.nn.conv.test_kgat_conv import literal_aggregator


def _L2_loss_mean(x):
    return torch.mean(torch.sum(torch.pow(x, 2), dim=1, keepdim=False) / 2.)


def literal_laplacian(h_list, t_list, r_list, n):
    # loader_kgat: create_adjacency_dict, random_walk_norm_lap, their sum.
    laplacians = []
    for r in sorted(set(r_list)):
        rows = [h for h, rr in zip(h_list, r_list) if rr == r]
        cols = [t for t, rr in zip(t_list, r_list) if rr == r]
        adj = sp.coo_matrix(([1] * len(rows), (rows, cols)), shape=(n, n))
        rowsum = np.array(adj.sum(axis=1))
        with np.errstate(divide='ignore'):  # Rows without edges, as theirs.
            d_inv = np.power(rowsum, -1.0).flatten()
        d_inv[np.isinf(d_inv)] = 0
        laplacians.append(sp.diags(d_inv).dot(adj).tocoo())
    return sum(laplacians).tocoo()


def literal_update_attention(model, h_list, t_list, r_list):
    # The port's update_attention / update_attention_batch.
    x = model.node_emb
    rows, cols, values = [], [], []
    for r_idx in torch.unique(r_list).tolist():
        index_list = torch.where(r_list == r_idx)
        batch_h_list, batch_t_list = h_list[index_list], t_list[index_list]
        r_embed = model.relation_emb[r_idx]
        W_r = model.transfer[r_idx]
        r_mul_h = torch.matmul(x[batch_h_list], W_r)
        r_mul_t = torch.matmul(x[batch_t_list], W_r)
        rows.append(batch_h_list)
        cols.append(batch_t_list)
        values.append(torch.sum(r_mul_t * torch.tanh(r_mul_h + r_embed),
                                dim=1))
    n = x.size(0)
    A_in = torch.sparse_coo_tensor(torch.stack([torch.cat(rows),
                                                torch.cat(cols)]),
                                   torch.cat(values), (n, n),
                                   check_invariants=True)
    return torch.sparse.softmax(A_in, dim=1).coalesce()


def literal_cf_embeddings(model, A_in):
    ego_embed = model.node_emb
    all_embed = [ego_embed]
    for conv in model.convs:
        ego_embed = literal_aggregator(conv, ego_embed, A_in)
        all_embed.append(F.normalize(ego_embed, p=2, dim=1))
    return torch.cat(all_embed, dim=1)


def literal_cf_loss(all_embed, user_ids, item_pos_ids, item_neg_ids, lam):
    user_embed = all_embed[user_ids]
    item_pos_embed = all_embed[item_pos_ids]
    item_neg_embed = all_embed[item_neg_ids]
    pos_score = torch.sum(user_embed * item_pos_embed, dim=1)
    neg_score = torch.sum(user_embed * item_neg_embed, dim=1)
    cf_loss = torch.mean((-1.0) * F.logsigmoid(pos_score - neg_score))
    l2_loss = _L2_loss_mean(user_embed) + _L2_loss_mean(item_pos_embed) + \
        _L2_loss_mean(item_neg_embed)
    return cf_loss + lam * l2_loss


def literal_kg_loss(model, h, r, pos_t, neg_t, lam):
    x = model.node_emb
    r_embed = model.relation_emb[r]
    W_r = model.transfer[r]
    r_mul_h = torch.bmm(x[h].unsqueeze(1), W_r).squeeze(1)
    r_mul_pos_t = torch.bmm(x[pos_t].unsqueeze(1), W_r).squeeze(1)
    r_mul_neg_t = torch.bmm(x[neg_t].unsqueeze(1), W_r).squeeze(1)
    pos_score = torch.sum(torch.pow(r_mul_h + r_embed - r_mul_pos_t, 2),
                          dim=1)
    neg_score = torch.sum(torch.pow(r_mul_h + r_embed - r_mul_neg_t, 2),
                          dim=1)
    kg_loss = torch.mean((-1.0) * F.logsigmoid(neg_score - pos_score))
    l2_loss = _L2_loss_mean(r_mul_h) + _L2_loss_mean(r_embed) + \
        _L2_loss_mean(r_mul_pos_t) + _L2_loss_mean(r_mul_neg_t)
    return kg_loss + lam * l2_loss


def small_ckg(seed):
    gen = torch.Generator().manual_seed(seed)
    num_users, num_items, num_entities, base = 5, 6, 11, 2
    triplets = torch.unique(torch.stack([
        torch.randint(num_items, (25, ), generator=gen),
        torch.randint(base, (25, ), generator=gen),
        torch.randint(num_entities, (25, ), generator=gen)]), dim=1)
    pairs = torch.unique(torch.stack([
        torch.randint(num_users, (20, ), generator=gen),
        torch.randint(num_items, (20, ), generator=gen)]), dim=1)
    kg = kgin_edges(triplets, 2 * base)
    edge_index, edge_type = collaborative_kg(pairs, kg[:2], kg[2],
                                             num_entities)
    return num_users, num_entities, 2 * base, pairs, edge_index, edge_type


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_weights_forward_and_losses_match_the_port(seed):
    num_users, num_entities, num_relations, pairs, edge_index, edge_type = \
        small_ckg(seed)
    n = num_entities + num_users
    torch.manual_seed(seed)
    model = KGAT(num_users, num_entities, num_relations, embedding_dim=8,
                 relation_dim=5, hidden_channels=(8, 6, 4)).double().eval()
    unique, pair = KGAT.pairs(edge_index, n)
    # The random-walk Laplacian, pairs joined by two relations summed:
    weight = KGAT.initial_weights(edge_index, edge_type, pair,
                                  unique.size(1))
    laplacian = literal_laplacian(*(t.tolist() for t in (
        edge_index[0], edge_index[1], edge_type)), n).tocsr()
    assert np.allclose(weight.numpy(),
                       np.asarray(laplacian[unique[0].numpy().copy(),
                                            unique[1].numpy().copy()]).ravel())
    assert unique.size(1) == laplacian.nnz
    # The attention after an epoch (a sparse softmax of the summed scores):
    attention = model.attention(edge_index, edge_type, unique, pair)
    expected = literal_update_attention(model, edge_index[0], edge_index[1],
                                        edge_type)
    assert torch.equal(expected.indices(), unique)
    assert torch.allclose(attention, expected.values(), atol=1e-12)
    # The forward and both losses, with their gradients:
    out = model(unique, attention)
    A_in = torch.sparse_coo_tensor(unique, attention, (n, n),
                                   check_invariants=True)
    expected_out = literal_cf_embeddings(model, A_in)
    assert out.shape == (n, 8 + 8 + 6 + 4)
    assert torch.allclose(out, expected_out, atol=1e-10)
    user, pos, neg = pairs[0], pairs[1], (pairs[1] + 1) % 6
    loss, _ = model.cf_loss(out, user, pos, neg, l2_weight=0.1)
    expected_loss = literal_cf_loss(expected_out, user + num_entities, pos,
                                    neg, 0.1)
    head, relation, tail = edge_index[0], edge_type, edge_index[1]
    kg_loss, _ = model.kg_loss(head, relation, tail, tail.flip(0), 0.1)
    expected_kg = literal_kg_loss(model, head, relation, tail, tail.flip(0),
                                  0.1)
    for ours, theirs in ((loss, expected_loss), (kg_loss, expected_kg)):
        assert_same_gradients(ours, theirs, list(model.parameters()),
                              atol=1e-10)


def test_samplers_draw_what_the_port_draws():
    num_users, num_entities, _, pairs, edge_index, edge_type = small_ckg(0)
    gen = torch.Generator().manual_seed(0)
    known = set(map(tuple, pairs.t().tolist()))
    users = set(pairs[0].tolist())
    user, pos, neg = sample_user_batch(pairs, num_users, 6, 3, gen)
    assert len(set(user.tolist())) == 3 and set(user.tolist()) <= users
    for u, i, j in zip(user.tolist(), pos.tolist(), neg.tolist()):
        assert (u, i) in known and (u, j) not in known and 0 <= j < 6
    user, _, _ = sample_user_batch(pairs, num_users, 6, 50, gen)
    assert user.numel() == 50  # More than the users: with replacement.
    triples = set(zip(edge_index[0].tolist(), edge_type.tolist(),
                      edge_index[1].tolist()))
    n = num_entities + num_users
    head, relation, tail, neg = sample_kg_batch(edge_index, edge_type, n, 8,
                                                gen)
    assert len(set(head.tolist())) == 8
    for h, r, t, t_neg in zip(head.tolist(), relation.tolist(),
                              tail.tolist(), neg.tolist()):
        assert (h, r, t) in triples and (h, r, t_neg) not in triples
        assert 0 <= t_neg < n


def test_kgat_arguments():
    model = KGAT(3, 5, 2, embedding_dim=4, hidden_channels=(4, 2))
    assert repr(model) == ('KGAT(3, 5, 2, embedding_dim=4, '
                           'hidden_channels=(4, 2))')
    assert model.transfer.shape == (4, 4, 64)
    for kwargs, match in ((dict(hidden_channels=()), 'hidden_channels'),
                          (dict(dropout=1.0), 'KGAT: dropout must be in'),
                          (dict(embedding_dim=0), 'KGAT: embedding_dim')):
        with pytest.raises(ValueError, match=match):
            KGAT(3, 5, 2, **kwargs)
