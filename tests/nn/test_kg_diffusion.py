import pytest
import torch
import torch.nn.functional as F

from diffkg_pyg.csr import to_csr
from diffkg_pyg.data import build_knowledge_graph
from diffkg_pyg.nn import GaussianDiffusion, SparseDenoiser
from diffkg_pyg.nn.kg_diffusion import (
    Support,
    denoise_support,
    denoiser_loss,
    rebuild_kg,
    rebuild_scores,
    sample_support,
    select_edges,
)
from diffkg_pyg.testing import dense_denoiser, dense_hidden, dense_reverse


def random_kg(num_entities=20, num_triplets=30, seed=0):
    gen = torch.Generator().manual_seed(seed)
    head = torch.randint(num_entities, (num_triplets, ), generator=gen)
    tail = torch.randint(num_entities, (num_triplets, ), generator=gen)
    keep = head != tail
    relation = torch.randint(3, (num_triplets, ), generator=gen)
    return build_knowledge_graph(head[keep].numpy(), relation[keep].numpy(),
                                 tail[keep].numpy(), num_items=num_entities)


@pytest.mark.parametrize('num_negatives', [1, 3])
def test_sample_support(num_negatives):
    kg = random_kg()
    ptr, col = to_csr(kg.edge_index, kg.num_entities)
    heads = torch.unique(kg.edge_index[0])
    gen = torch.Generator().manual_seed(0)
    edges = set(map(tuple, kg.edge_index.t().tolist()))
    degree = {h: sum(1 for e in edges if e[0] == h) for h in heads.tolist()}
    for _ in range(5):
        support = sample_support(ptr, col, heads, kg.num_entities,
                                 num_negatives, gen)
        for b, h in enumerate(heads.tolist()):
            lo, hi = support.ptr[b], support.ptr[b + 1]
            index = support.index[lo:hi].tolist()
            target = support.target[lo:hi].tolist()
            assert len(set(index)) == len(index)  # Each entity once.
            assert [(h, i) in edges for i in index] == \
                [v == 1.0 for v in target]
            assert sum(target) == degree[h]
            num_draws = min(num_negatives * degree[h],
                            kg.num_entities - degree[h])
            assert degree[h] < len(index) <= degree[h] + num_draws
    # Horvitz-Thompson: the weighted non-edges estimate the N - degree
    # non-edges without bias (within 4 standard errors of the mean):
    draws = 2000
    total = torch.zeros(heads.numel())
    for _ in range(draws):
        support = sample_support(ptr, col, heads, kg.num_entities,
                                 num_negatives, gen)
        row = torch.repeat_interleave(torch.arange(heads.numel()),
                                      support.ptr.diff())
        total += torch.zeros(heads.numel()).index_add_(
            0, row, support.weight * (support.target == 0))
    free = torch.tensor([kg.num_entities - degree[h]
                         for h in heads.tolist()]).float()
    assert ((total / draws - free).abs() < 4 * free / draws**0.5).all()


def test_sample_support_bad_arguments():
    with pytest.raises(ValueError, match="'num_negatives' must be >= 1"):
        sample_support(torch.tensor([0, 0]), torch.empty(0, dtype=torch.long),
                       torch.tensor([0]), 1, num_negatives=0)


def dense_loss(denoiser, diffusion, x0, t, noise, mask, item_user_emb,
               head_emb, ckgc_weight):
    # The spec's dense formulas, noise and dropout on all N entries:
    acp = diffusion.alphas_cumprod[t].float()[:, None]
    x_t = acp.sqrt() * x0 + (1 - acp).sqrt() * noise
    x_hat = dense_denoiser(denoiser, x_t, t, mask)
    snr = diffusion.alphas_cumprod / (1 - diffusion.alphas_cumprod)
    weight = torch.where(t == 0, 1.0, (snr[t - 1] - snr[t]).float())
    diff = (weight * ((x0 - x_hat)**2).mean(dim=1)).mean()
    z = x_hat[:, :item_user_emb.size(0)] @ item_user_emb
    ckgc = ((z - head_emb)**2).mean(dim=1).mean()
    return (1 - ckgc_weight) * diff + ckgc_weight * ckgc, diff, ckgc, x_t


def loss_case(seed=0, num_entities=12, num_items=5, dim=4, batch_size=3):
    torch.manual_seed(seed)
    denoiser = SparseDenoiser(num_entities, 6, time_channels=4)
    x0 = (torch.rand(batch_size, num_entities) < 0.3).float()
    x0[:, 0] = 1.0  # Every row has an edge.
    noise = torch.randn(batch_size, num_entities)
    mask = (torch.rand(batch_size, num_entities) < 0.5).float()
    return (denoiser, GaussianDiffusion(), x0, noise, mask,
            torch.randn(num_items, dim), torch.randn(batch_size, dim))


@pytest.mark.parametrize('training', [False, True])
@pytest.mark.parametrize('ckgc_weight', [0.0, 0.5, 1.0])
def test_denoiser_loss_full_support_equals_dense(ckgc_weight, training):
    denoiser, diffusion, x0, noise, mask, item_user, head = loss_case()
    denoiser.train(training)
    batch_size, num_entities = x0.shape
    t = torch.tensor([0, 2, 4])  # t = 0 and t = T - 1 among them.
    support = Support(
        ptr=torch.arange(batch_size + 1) * num_entities,
        index=torch.arange(num_entities).repeat(batch_size),
        target=x0.view(-1), weight=torch.ones(batch_size * num_entities))
    loss, diff, ckgc = denoiser_loss(denoiser, diffusion, support, t,
                                     item_user, head, ckgc_weight, noise,
                                     mask)
    expected = dense_loss(denoiser, diffusion, x0, t, noise,
                          mask if training else None, item_user, head,
                          ckgc_weight)
    for value, dense in zip((loss, diff, ckgc), expected):
        assert torch.allclose(value, dense, atol=1e-5)


@pytest.mark.parametrize('training', [False, True])
@pytest.mark.parametrize('seed', [0, 1])
def test_partial_support_sees_the_dense_input(seed, training):
    # Edges plus sampled non-edges: the hidden state, the outputs on the
    # support and the CKGC term equal the dense network's for the same
    # noise and dropout draw, at t = 0 and t = T - 1.
    denoiser, diffusion, x0, noise, mask, item_user, head = loss_case(seed)
    denoiser.train(training)
    num_entities = x0.size(1)
    edge_index = torch.nonzero(x0).t()
    ptr, col = to_csr(edge_index, x0.size(0))
    support = sample_support(ptr, col, torch.arange(x0.size(0)),
                             num_entities,
                             generator=torch.Generator().manual_seed(seed))
    for step in (0, diffusion.steps - 1):
        t = torch.full((x0.size(0), ), step)
        hidden, x_hat = denoise_support(denoiser, diffusion, support, t,
                                        noise, mask)
        *_, ckgc, x_t = dense_loss(denoiser, diffusion, x0, t, noise,
                                   mask if training else None, item_user,
                                   head, 0.5)
        keep = mask if training else None
        assert torch.allclose(hidden, dense_hidden(denoiser, x_t, t, keep),
                              atol=1e-5)
        row = torch.repeat_interleave(torch.arange(x0.size(0)),
                                      support.ptr.diff())
        dense = dense_denoiser(denoiser, x_t, t, keep)
        assert torch.allclose(x_hat, dense[row, support.index], atol=1e-5)
        _, _, sparse_ckgc = denoiser_loss(denoiser, diffusion, support, t,
                                          item_user, head, 0.5, noise, mask)
        assert torch.allclose(sparse_ckgc, ckgc, atol=1e-5)


@pytest.mark.parametrize('training', [False, True])
@pytest.mark.parametrize('seed', [0, 1])
def test_partial_support_has_the_dense_gradient(seed, training):
    # The CKGC term is exact on a partial support, so its gradient is the
    # dense network's, for every parameter: the input table's columns
    # outside the support included (they carried noise).
    denoiser, diffusion, x0, noise, mask, item_user, head = loss_case(seed)
    denoiser.train(training)
    edge_index = torch.nonzero(x0).t()
    ptr, col = to_csr(edge_index, x0.size(0))
    support = sample_support(ptr, col, torch.arange(x0.size(0)),
                             x0.size(1),
                             generator=torch.Generator().manual_seed(seed))
    t = torch.tensor([0, 2, 4])
    loss, *_ = denoiser_loss(denoiser, diffusion, support, t, item_user,
                             head, 1.0, noise, mask)
    sparse = torch.autograd.grad(loss, list(denoiser.parameters()))
    dense, *_ = dense_loss(denoiser, diffusion, x0, t, noise,
                           mask if training else None, item_user, head, 1.0)
    expected = torch.autograd.grad(dense, list(denoiser.parameters()))
    in_support = torch.zeros(x0.shape, dtype=torch.bool)
    row = torch.repeat_interleave(torch.arange(x0.size(0)),
                                  support.ptr.diff())
    in_support[row, support.index] = True
    assert not bool(in_support.all(0).all())  # Some columns lie outside.
    for got, want in zip(sparse, expected):
        got = got.to_dense() if got.is_sparse else got
        assert torch.allclose(got, want, atol=1e-6)


def test_noise_is_drawn_on_all_entities():
    # Without given noise, the input still carries noise on every entity:
    # two draws of a row with one edge differ in their hidden state even
    # where the support is the same.
    denoiser, diffusion, *_ = loss_case()
    denoiser.eval()
    support = Support(ptr=torch.tensor([0, 1]), index=torch.tensor([0]),
                      target=torch.ones(1), weight=torch.ones(1))
    gen = torch.Generator().manual_seed(0)
    t = torch.tensor([4])
    first, _ = denoise_support(denoiser, diffusion, support, t,
                               generator=gen)
    second, _ = denoise_support(denoiser, diffusion, support, t,
                                generator=gen)
    assert not torch.allclose(first, second)


@pytest.mark.parametrize('sampling_steps', [0, 1, 3])
@pytest.mark.parametrize('norm', [True, False])
def test_rebuild_scores_equal_the_dense_reverse_process(sampling_steps,
                                                         norm):
    kg = random_kg(25, 50)
    torch.manual_seed(0)
    denoiser = SparseDenoiser(kg.num_entities, 8, time_channels=4,
                              norm=norm)
    diffusion = GaussianDiffusion()
    heads = torch.unique_consecutive(kg.edge_index[0])
    noise = torch.randn(heads.numel(), kg.num_entities)
    score = rebuild_scores(denoiser, diffusion, kg.edge_index,
                           sampling_steps, batch_size=4, noise=noise)
    x = torch.zeros(heads.numel(), kg.num_entities)
    row = torch.searchsorted(heads, kg.edge_index[0])
    x[row, kg.edge_index[1]] = 1.0
    if sampling_steps > 0:
        step = torch.full((heads.numel(), 1), sampling_steps - 1)
        x = diffusion.q_sample(x, step, noise)
    expected = dense_reverse(denoiser, diffusion, x)[row, kg.edge_index[1]]
    assert torch.allclose(score, expected, atol=1e-5)


def test_rebuild_hand_made():
    # Triplets (h, r, t); inverses get relations + 3.
    head = torch.tensor([0, 0, 1, 2]).numpy()
    relation = torch.tensor([0, 1, 2, 0]).numpy()
    tail = torch.tensor([1, 3, 2, 3]).numpy()
    kg = build_knowledge_graph(head, relation, tail)
    score = kg.edge_index[1].float()  # The tail's id as its score.
    edge_index, edge_type = select_edges(score, kg.edge_index, kg.edge_type,
                                         kg.num_entities, rebuild_k=1,
                                         keep_rate=1.0)
    # Best tail per head: 0->3, 1->2, 2->3, 3->2; plus reverses 3->0, 2->1.
    pairs = sorted(zip(*edge_index.tolist(), edge_type.tolist()))
    assert pairs == [(0, 3, 1), (1, 2, 2), (2, 1, 5), (2, 3, 0), (3, 0, 4),
                     (3, 2, 3)]
    # rebuild_k larger than every degree keeps the whole KG:
    edge_index, edge_type = select_edges(score, kg.edge_index, kg.edge_type,
                                         kg.num_entities, rebuild_k=5,
                                         keep_rate=1.0)
    assert torch.equal(edge_index, kg.edge_index)
    assert torch.equal(edge_type, kg.edge_type)


def test_rebuild_keep_rate_and_real_denoiser():
    kg = random_kg(30, 60)
    denoiser = SparseDenoiser(kg.num_entities, 8, time_channels=4)
    gen = torch.Generator().manual_seed(0)
    edge_index, edge_type = rebuild_kg(denoiser, GaussianDiffusion(),
                                       kg.edge_index, kg.edge_type,
                                       kg.num_entities, rebuild_k=2,
                                       keep_rate=0.5, batch_size=4,
                                       generator=gen)
    assert denoiser.training  # Restored.
    assert edge_index.size(1) == edge_type.numel() < kg.edge_index.size(1)
    known = {(h, t): r for h, t, r in zip(*kg.edge_index.tolist(),
                                         kg.edge_type.tolist())}
    for h, t, r in zip(*edge_index.tolist(), edge_type.tolist()):
        assert known[(h, t)] == r


@pytest.mark.parametrize('sampling_steps', [0, 5])
@pytest.mark.parametrize('rebuild_k', [1, 2, 3])
def test_rebuild_scores_only_heads_it_must_rank(rebuild_k, sampling_steps):
    # Heads with at most `rebuild_k` edges are not scored; the selection is
    # the one made from every edge's score.
    kg = random_kg(30, 60)
    degree = torch.unique_consecutive(kg.edge_index[0], return_counts=True)[1]
    assert (degree <= rebuild_k).any() and (degree > rebuild_k).any()
    torch.manual_seed(0)
    denoiser = SparseDenoiser(kg.num_entities, 8, time_channels=4)
    # Loud noise, so that a head given another head's noise ranks otherwise.
    diffusion = GaussianDiffusion(5, noise_scale=1.0, noise_min=0.1,
                                  noise_max=0.5)
    noise = torch.randn(degree.numel(), kg.num_entities)
    score = rebuild_scores(denoiser, diffusion, kg.edge_index,
                           sampling_steps, batch_size=4, noise=noise)
    expected = select_edges(score, kg.edge_index, kg.edge_type,
                            kg.num_entities, rebuild_k, 0.5,
                            torch.Generator().manual_seed(1))
    out = rebuild_kg(denoiser, diffusion, kg.edge_index, kg.edge_type,
                     kg.num_entities, rebuild_k, 0.5, sampling_steps,
                     batch_size=4, generator=torch.Generator().manual_seed(1),
                     noise=noise)
    assert torch.equal(out[0], expected[0])
    assert torch.equal(out[1], expected[1])


@pytest.mark.parametrize('kwargs,match', [
    (dict(rebuild_k=0), "'rebuild_k' must be >= 1"),
    (dict(keep_rate=0.0), "'keep_rate' must lie in"),
])
def test_rebuild_bad_arguments(kwargs, match):
    kg = random_kg()
    with pytest.raises(ValueError, match=match):
        rebuild_kg(SparseDenoiser(kg.num_entities, 4, 2),
                   GaussianDiffusion(), kg.edge_index,
                   kg.edge_type, kg.num_entities, **kwargs)


def test_dense_helper_is_the_spec_mlp():
    # Guard for the reference used above: normalised input, tanh, linear.
    denoiser = SparseDenoiser(6, 3, time_channels=2).eval()
    x = torch.rand(2, 6)
    t = torch.tensor([1, 3])
    out = dense_denoiser(denoiser, x, t)
    time = denoiser.time_layer(
        torch.cat([torch.cos(t[:, None].float()),
                   torch.sin(t[:, None].float())], dim=-1))
    h = torch.tanh(F.normalize(x) @ denoiser.input_emb.weight +
                   denoiser.input_time(time))
    expected = h @ denoiser.output_emb.weight.t() + \
        denoiser.output_bias.weight.view(-1)
    assert torch.allclose(out, expected, atol=1e-6)
