import pytest
import torch
import torch.nn.functional as F

from diffkg_pyg.data import build_knowledge_graph
from diffkg_pyg.nn import GaussianDiffusion, SparseDenoiser
from diffkg_pyg.nn.kg_diffusion import (
    Support,
    denoiser_loss,
    rebuild_kg,
    sample_support,
)
from diffkg_pyg.testing import dense_denoiser
from diffkg_pyg.utils import to_csr


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
    support = sample_support(ptr, col, heads, kg.num_entities, num_negatives,
                             gen)
    edges = set(map(tuple, kg.edge_index.t().tolist()))
    for b, h in enumerate(heads.tolist()):
        lo, hi = support.ptr[b], support.ptr[b + 1]
        index = support.index[lo:hi].tolist()
        target = support.target[lo:hi].tolist()
        weight = support.weight[lo:hi]
        degree = sum(1 for e in edges if e[0] == h)
        assert [(h, i) in edges for i in index] == [v == 1.0 for v in target]
        assert sum(target) == degree
        num_neg = min(num_negatives * degree, kg.num_entities - degree)
        assert len(index) == degree + num_neg
        assert all(0 <= i < kg.num_entities for i in index)
        # Weighted non-edges stand for all N - degree of them:
        assert float(weight[support.target[lo:hi] == 0].sum()) == \
            pytest.approx(kg.num_entities - degree)


def test_sample_support_bad_arguments():
    with pytest.raises(ValueError, match="'num_negatives' must be >= 1"):
        sample_support(torch.tensor([0, 0]), torch.empty(0, dtype=torch.long),
                       torch.tensor([0]), 1, num_negatives=0)


@pytest.mark.parametrize('ckgc_weight', [0.0, 0.5, 1.0])
def test_denoiser_loss_full_support_equals_dense(ckgc_weight):
    torch.manual_seed(0)
    num_entities, num_items, dim, batch_size = 12, 5, 4, 3
    denoiser = SparseDenoiser(num_entities, 6, time_channels=4).eval()
    diffusion = GaussianDiffusion()
    x0 = (torch.rand(batch_size, num_entities) < 0.3).float()
    t = torch.tensor([0, 2, 4])
    noise = torch.randn(batch_size, num_entities)
    item_user_emb = torch.randn(num_items, dim)
    head_emb = torch.randn(batch_size, dim)
    support = Support(
        ptr=torch.arange(batch_size + 1) * num_entities,
        index=torch.arange(num_entities).repeat(batch_size),
        target=x0.view(-1), weight=torch.ones(batch_size * num_entities))
    loss, diff, ckgc = denoiser_loss(denoiser, diffusion, support, t,
                                     item_user_emb, head_emb, ckgc_weight,
                                     noise.view(-1))
    # The spec's dense formulas:
    acp = diffusion.alphas_cumprod[t].float()[:, None]
    x_t = acp.sqrt() * x0 + (1 - acp).sqrt() * noise
    x_hat = dense_denoiser(denoiser, x_t, t)
    snr = diffusion.alphas_cumprod / (1 - diffusion.alphas_cumprod)
    weight = torch.where(t == 0, 1.0, (snr[t - 1] - snr[t]).float())
    dense_diff = (weight * ((x0 - x_hat)**2).mean(dim=1)).mean()
    z = x_hat[:, :num_items] @ item_user_emb
    dense_ckgc = ((z - head_emb)**2).mean(dim=1).mean()
    assert torch.allclose(diff, dense_diff, atol=1e-5)
    assert torch.allclose(ckgc, dense_ckgc, atol=1e-5)
    expected = (1 - ckgc_weight) * dense_diff + ckgc_weight * dense_ckgc
    assert torch.allclose(loss, expected, atol=1e-5)


class TailScore(torch.nn.Module):
    r"""A stand-in denoiser whose output is the tail's id."""
    training = False

    def forward(self, x, ptr, index, t):
        return index.float()


def test_rebuild_hand_made():
    # Triplets (h, r, t); inverses get relations + 3.
    head = torch.tensor([0, 0, 1, 2]).numpy()
    relation = torch.tensor([0, 1, 2, 0]).numpy()
    tail = torch.tensor([1, 3, 2, 3]).numpy()
    kg = build_knowledge_graph(head, relation, tail)
    diffusion = GaussianDiffusion()
    edge_index, edge_type = rebuild_kg(TailScore(), diffusion, kg.edge_index,
                                       kg.edge_type, kg.num_entities,
                                       rebuild_k=1, keep_rate=1.0)
    # Best tail per head: 0->3, 1->2, 2->3, 3->2; plus reverses 3->0, 2->1.
    pairs = sorted(zip(*edge_index.tolist(), edge_type.tolist()))
    assert pairs == [(0, 3, 1), (1, 2, 2), (2, 1, 5), (2, 3, 0), (3, 0, 4),
                     (3, 2, 3)]
    # rebuild_k larger than every degree keeps the whole KG:
    edge_index, edge_type = rebuild_kg(TailScore(), diffusion, kg.edge_index,
                                       kg.edge_type, kg.num_entities,
                                       rebuild_k=5, keep_rate=1.0)
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


@pytest.mark.parametrize('kwargs,match', [
    (dict(rebuild_k=0), "'rebuild_k' must be >= 1"),
    (dict(keep_rate=0.0), "'keep_rate' must lie in"),
])
def test_rebuild_bad_arguments(kwargs, match):
    kg = random_kg()
    with pytest.raises(ValueError, match=match):
        rebuild_kg(TailScore(), GaussianDiffusion(), kg.edge_index,
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
