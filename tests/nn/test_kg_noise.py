import pytest
import torch
import torch.nn.functional as F

from diffkg_pyg.nn.kg_noise import (
    CHUNK_ENTRIES,
    SAMPLED_COLUMNS,
    _chi_square,
    choose_noise_columns,
    full_noise,
)


def pre_activation(weight, x0_support, ptr, index, a, b, keep, eps, mask,
                   outside):
    # W1 dropout(x_t) / ||x_t|| from the support and what lies outside it.
    row = torch.repeat_interleave(torch.arange(ptr.numel() - 1), ptr.diff())
    x = a * x0_support + b * eps
    x_in = x if mask is None else x * mask / keep
    product = F.embedding_bag(index, weight, ptr[:-1], mode='sum',
                              per_sample_weights=x_in,
                              sparse=True) + outside[0]
    square = torch.zeros(ptr.numel() - 1).index_add_(0, row, x * x)
    return product / (square + outside[1]).sqrt()[:, None]


@pytest.mark.slow  # 2 x 8,000 draws.
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
    draws = 8000
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


def outside_loss(weight, ptr, index, keep, generator=None, noise=None,
                 mask=None, num_columns=None):
    # A smooth function of the rows' pre-activations (tanh, then fixed
    # coefficients), as the denoiser's loss is of its hidden state.
    x0 = torch.ones(index.numel())
    scale = torch.full((ptr.numel() - 1, ), 0.8)
    eps, keep_mask, outside = full_noise(weight, ptr, index, scale, keep,
                                         noise, mask, generator, num_columns)
    # full_noise returns the keep mask on the support (None when keep 1):
    pre = pre_activation(weight, x0, ptr, index, 0.6, 0.8, keep, eps,
                         keep_mask, outside)
    coefficients = torch.linspace(-1.0, 1.0, weight.size(1)) + 0.25
    return (torch.tanh(pre) @ coefficients).mean()


@pytest.mark.parametrize('kept', [True, False])
@pytest.mark.parametrize('chunk_entries', [None, 8])
@pytest.mark.parametrize('keep', [1.0, 0.5])
def test_exact_noise_gradient_replays_the_drawn_noise(keep, chunk_entries,
                                                      kept, monkeypatch):
    # The backward reads the forward's kept chunks or (past
    # KEPT_NOISE_ENTRIES) replays its draws from a copy of the generator,
    # in one chunk or several: the gradient equals the one computed from
    # the same noise and mask given as arrays.
    from diffkg_pyg.nn import kg_noise
    if chunk_entries is not None:
        monkeypatch.setattr(kg_noise, 'CHUNK_ENTRIES', chunk_entries)
    if not kept:
        monkeypatch.setattr(kg_noise, 'KEPT_NOISE_ENTRIES', 0)
    gen = torch.Generator().manual_seed(0)
    num_entities, batch_size = 11, 3
    weight = torch.randn(num_entities, 4, generator=gen, requires_grad=True)
    ptr, index = torch.tensor([0, 2, 3, 5]), torch.tensor([1, 4, 0, 7, 9])
    drawn = torch.Generator().manual_seed(1)
    loss = outside_loss(weight, ptr, index, keep, generator=drawn)
    grad, = torch.autograd.grad(loss, weight)
    # The same draws as arrays, chunk by chunk as the forward drew them:
    noise = torch.empty(batch_size, num_entities)
    mask = torch.ones(batch_size, num_entities)
    for start, end, eps, keep_mask in kg_noise._noise_chunks(
            batch_size, num_entities, keep, None, None,
            torch.Generator().manual_seed(1), torch.device('cpu')):
        noise[:, start:end] = eps
        if keep_mask is not None:
            mask[:, start:end] = keep_mask.float()
    loss_given = outside_loss(weight, ptr, index, keep, noise=noise,
                              mask=mask if keep < 1.0 else None)
    grad_given, = torch.autograd.grad(loss_given, weight)
    # Dense: every row has a gradient (SparseRowAdam's every-row update).
    assert not grad.is_sparse
    assert torch.allclose(loss, loss_given)
    assert torch.allclose(grad.to_dense(), grad_given.to_dense(), atol=1e-6)
    # Every column carried noise, so every row of the table moves where a
    # row kept it (dropout):
    moves = grad.to_dense().abs().sum(1) > 0
    assert torch.equal(moves, mask.amax(0) > 0)


@pytest.mark.parametrize('keep', [1.0, 0.5])
def test_kept_noise_chunks_give_the_replayed_gradient_exactly(keep,
                                                              monkeypatch):
    # Keeping the forward's masked chunks for the backward changes no bit
    # of the gradient, nor the generator's state after the step.
    from diffkg_pyg.nn import kg_noise
    monkeypatch.setattr(kg_noise, 'CHUNK_ENTRIES', 8)  # Several chunks.
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(11, 4, generator=gen, requires_grad=True)
    ptr, index = torch.tensor([0, 2, 3, 5]), torch.tensor([1, 4, 0, 7, 9])
    out = []
    for entries in (kg_noise.KEPT_NOISE_ENTRIES, 0):
        monkeypatch.setattr(kg_noise, 'KEPT_NOISE_ENTRIES', entries)
        drawn = torch.Generator().manual_seed(1)
        loss = outside_loss(weight, ptr, index, keep, generator=drawn)
        grad, = torch.autograd.grad(loss, weight)
        out.append((loss, grad, drawn.get_state()))
    for a, b in zip(*out):
        assert torch.equal(a, b)


@pytest.mark.slow  # 2 x (20 x 5,000 + 300 x 200) draws.
@pytest.mark.parametrize('keep', [1.0, 0.5])
def test_sampled_noise_has_the_exact_expected_gradient(keep):
    # One row (40 entities, 3 in the support) repeated: the expected input
    # table gradient of a smooth loss of the hidden state, estimated from
    # 20 columns of 37, against the exact path's. Every coordinate within
    # 5 standard errors of the difference, and the columns outside the
    # support (which the estimate reaches only when drawn, weighted) carry
    # a real share of it.
    torch.manual_seed(0)
    num_entities = 40
    weight = torch.randn(num_entities, 3)
    support = torch.tensor([4, 9, 20])

    def mean_gradient(num_columns, calls, rows, seed):
        gen = torch.Generator().manual_seed(seed)
        w = weight.clone().requires_grad_()
        ptr, index = torch.arange(rows + 1) * 3, support.repeat(rows)
        grads = torch.stack([
            torch.autograd.grad(outside_loss(w, ptr, index, keep, gen,
                                             num_columns=num_columns),
                                w)[0].to_dense() for _ in range(calls)
        ]).double()
        return grads.mean(0), grads.var(0) / calls

    exact, var_exact = mean_gradient(None, 20, 5000, 0)
    sampled, var_sampled = mean_gradient(20, 300, 200, 1)
    z = (sampled - exact) / (var_exact + var_sampled).sqrt()
    assert float(z.abs().max()) < 5
    outside = torch.ones(num_entities, dtype=torch.bool)
    outside[support] = False
    assert exact[outside].norm() > 0.1 * exact.norm()


@pytest.mark.parametrize('device, num_entities, free_bytes, expected', [
    ('cpu', 10**6, None, SAMPLED_COLUMNS),  # The CPU: the estimator.
    ('cuda', 1000, 0, SAMPLED_COLUMNS),  # N <= the columns: exact anyway.
    ('cuda', 10**5, 80 * 2**30, None),  # A GPU with room: exact.
    ('cuda', 10**5, 2**30, SAMPLED_COLUMNS),  # Without room: estimated.
])
def test_choose_noise_columns_follows_the_device(monkeypatch, device,
                                                 num_entities, free_bytes,
                                                 expected):
    asked = []

    def mem_get_info(where):
        asked.append(where)
        return free_bytes, 2 * free_bytes

    monkeypatch.setattr(torch.cuda, 'mem_get_info', mem_get_info)
    assert choose_noise_columns(num_entities, 1000, torch.device(device)) \
        == expected
    # The free memory is read only where it decides.
    assert len(asked) == (device == 'cuda' and num_entities > 16384)
    # The threshold: four times the exact path's arrays.
    need = 4 * (3 * num_entities * 1000 + 2 * CHUNK_ENTRIES)
    if asked:
        free_bytes = 4 * need
        assert choose_noise_columns(num_entities, 1000, device) is None
        free_bytes = 4 * need - 1
        assert choose_noise_columns(num_entities, 1000, device) == \
            SAMPLED_COLUMNS
