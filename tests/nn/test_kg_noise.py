import pytest
import torch
import torch.nn.functional as F

from diffkg_pyg.nn.kg_noise import _chi_square, full_noise


def pre_activation(weight, x0_support, ptr, index, a, b, keep, eps, mask,
                   outside):
    # W1 dropout(x_t) / ||x_t|| from the support and what lies outside it.
    row = torch.repeat_interleave(torch.arange(ptr.numel() - 1), ptr.diff())
    x = a * x0_support + b * eps
    x_in = x if mask is None else x * mask / keep
    product = F.embedding_bag(index, weight, ptr[:-1], mode='sum',
                              per_sample_weights=x_in) + outside[0]
    square = torch.zeros(ptr.numel() - 1).index_add_(0, row, x * x)
    return product / (square + outside[1]).sqrt()[:, None]


@pytest.mark.slow  # 2 x 20,000 draws.
@pytest.mark.parametrize('keep', [1.0, 0.5])
def test_sampled_noise_has_the_dense_mean_and_covariance(keep):
    # A small KG row with 40 entities, 3 of them in the support (2 edges,
    # 1 sampled non-edge); the estimator draws 8 columns per step.
    torch.manual_seed(0)
    num_entities, hidden = 40, 3
    weight = torch.randn(num_entities, hidden)
    ptr, index = torch.tensor([0, 3]), torch.tensor([4, 9, 20])
    x0 = torch.tensor([1.0, 1.0, 0.0])
    a, b = 0.6, 0.8
    gen = torch.Generator().manual_seed(0)
    draws = 20000
    samples = {}
    for name, columns in (('dense', None), ('sampled', 8)):
        out = []
        for _ in range(draws):
            eps, mask, outside = full_noise(weight, ptr, index,
                                            torch.tensor([b]), keep,
                                            generator=gen,
                                            num_columns=columns)
            out.append(pre_activation(weight, x0, ptr, index, a, b, keep,
                                      eps, mask, outside))
        samples[name] = torch.cat(out).double()
    mean = {k: v.mean(0) for k, v in samples.items()}
    cov = {k: torch.cov(v.t()) for k, v in samples.items()}
    var = cov['dense'].diagonal()
    se_mean = (2 * var / draws).sqrt()
    assert ((mean['sampled'] - mean['dense']).abs() < 5 * se_mean).all()
    se_cov = (2 * 2 * var[:, None] * var[None, :] / draws).sqrt()
    assert ((cov['sampled'] - cov['dense']).abs() < 5 * se_cov).all()


@pytest.mark.parametrize('num_columns', [1, 7, 29])
def test_sampled_noise_sees_which_columns_lie_in_the_support(num_columns):
    # Replays the estimator's draws with the support marked by brute force
    # on a B x N grid: the drawn columns outside each row's support, their
    # weighted sum and their squares.
    gen = torch.Generator().manual_seed(0)
    num_entities, batch_size = 30, 6
    degree = torch.randint(1, 12, (batch_size, ), generator=gen)
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), degree.cumsum(0)])
    index = torch.cat([torch.randperm(num_entities, generator=gen)[:d]
                       for d in degree.tolist()])
    row = torch.repeat_interleave(torch.arange(batch_size), degree)
    weight = torch.randn(num_entities, 3, generator=gen)
    _, _, (product, square) = full_noise(
        weight, ptr, index, torch.ones(batch_size), 1.0,
        generator=torch.Generator().manual_seed(1), num_columns=num_columns)
    replay = torch.Generator().manual_seed(1)
    torch.randn(index.numel(), generator=replay)  # The support's noise.
    columns = torch.randperm(num_entities, generator=replay)[:num_columns]
    columns = columns.sort().values
    in_support = torch.zeros(batch_size, num_entities, dtype=torch.bool)
    in_support[row, index] = True
    outside = ~in_support[:, columns]
    draws = torch.randn(outside.shape, generator=replay) * outside
    free = (num_entities - degree).float()
    factor = (free / outside.sum(dim=-1).clamp(min=1)).sqrt()
    expected = (draws @ weight[columns]) * factor[:, None]
    assert torch.allclose(product, expected, atol=1e-6)
    # The squares: the drawn ones, plus a chi-square of the undrawn rest.
    assert bool((square >= draws.square().sum(dim=-1) - 1e-6).all())
    assert 0 < int(outside.sum()) < outside.numel() or num_columns == 1


def test_exact_path_when_columns_cover_everything():
    weight = torch.randn(10, 2)
    ptr, index = torch.tensor([0, 1]), torch.tensor([3])
    outs = [full_noise(weight, ptr, index, torch.ones(1), 1.0,
                       generator=torch.Generator().manual_seed(0),
                       num_columns=columns)[2][0] for columns in (None, 10)]
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize('dof', [1, 3, 40, 5000])
def test_chi_square(dof):
    gen = torch.Generator().manual_seed(0)
    draws = _chi_square(torch.full((20000, ), dof), gen).double()
    assert abs(draws.mean() - dof) < 5 * (2 * dof / 20000)**0.5
    assert abs(draws.var() / (2 * dof) - 1) < 0.06
    assert bool((draws >= 0).all())
    assert float(_chi_square(torch.zeros(3), gen).abs().sum()) == 0.0
