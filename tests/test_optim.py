import math

import pytest
import torch

from diffkg_pyg.optim import SparseRowAdam


def _steps(optimizer_class, module_class, steps=6, **kwargs):
    torch.manual_seed(0)
    if module_class is torch.nn.EmbeddingBag:
        module = torch.nn.EmbeddingBag(20, 5, mode='sum', sparse=True)
    else:
        module = torch.nn.Embedding(20, 5, sparse=True)
    optimizer = optimizer_class(module.parameters(), **kwargs)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        # Repeated rows, and rows that stay untouched for some steps:
        index = torch.randint(12, (9, ), generator=generator)
        weight = torch.rand(9, generator=generator)
        if module_class is torch.nn.EmbeddingBag:
            out = module(index, torch.tensor([0, 4]),
                         per_sample_weights=weight)
        else:
            out = module(index) * weight[:, None]
        optimizer.zero_grad()
        (out.sin().sum() + out.square().sum()).backward()
        optimizer.step()
    return module.weight.detach(), optimizer


@pytest.mark.parametrize('module_class',
                         [torch.nn.Embedding, torch.nn.EmbeddingBag])
@pytest.mark.parametrize('kwargs', [{}, dict(lr=0.05, betas=(0.5, 0.9))])
def test_sparse_row_adam_matches_sparse_adam(module_class, kwargs):
    expected, reference = _steps(torch.optim.SparseAdam, module_class,
                                 **kwargs)
    out, optimizer = _steps(SparseRowAdam, module_class, **kwargs)
    assert torch.allclose(out, expected, atol=1e-6)
    state = next(iter(optimizer.state.values()))
    reference_state = next(iter(reference.state.values()))
    assert state['step'] == reference_state['step'] == 6
    for name in ('exp_avg', 'exp_avg_sq'):
        assert torch.allclose(state[name], reference_state[name], atol=1e-6)


def test_sparse_row_adam_leaves_absent_rows():
    torch.manual_seed(0)
    module = torch.nn.Embedding(10, 3, sparse=True)
    before = module.weight.detach().clone()
    optimizer = SparseRowAdam(module.parameters(), lr=0.1)
    module(torch.tensor([2, 2, 7])).sum().backward()
    optimizer.step()
    changed = (module.weight.detach() != before).any(dim=1)
    assert changed.nonzero().view(-1).tolist() == [2, 7]


def test_sparse_row_adam_state_dict_round_trip():
    _, optimizer = _steps(SparseRowAdam, torch.nn.Embedding, steps=3)
    module = torch.nn.Embedding(20, 5, sparse=True)
    copy = SparseRowAdam(module.parameters())
    copy.load_state_dict(optimizer.state_dict())
    state = next(iter(copy.state.values()))
    original = next(iter(optimizer.state.values()))
    assert state['step'] == 3
    assert torch.equal(state['exp_avg'], original['exp_avg'])
    assert torch.equal(state['exp_avg_sq'], original['exp_avg_sq'])


def test_sparse_row_adam_errors():
    parameter = torch.nn.Parameter(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="'lr' must be > 0"):
        SparseRowAdam([parameter], lr=0)
    with pytest.raises(ValueError, match="'betas'"):
        SparseRowAdam([parameter], betas=(1.0, 0.9))


@pytest.mark.parametrize('steps', [1, 3])
def test_sparse_row_adam_dense_gradient_is_every_row(steps):
    # A dense gradient (the denoiser's exact noise gradient) is the update
    # of every row, to the last bit of the sparse path's with all rows.
    torch.manual_seed(0)
    start = torch.randn(6, 4)
    grads = [torch.randn(6, 4) for _ in range(steps)]
    out = []
    for dense in (True, False):
        parameter = torch.nn.Parameter(start.clone())
        optimizer = SparseRowAdam([parameter], lr=0.1)
        for grad in grads:
            parameter.grad = grad.clone() if dense else \
                grad.to_sparse(1)
            optimizer.step()
        state = optimizer.state[parameter]
        out.append((parameter.detach(), state['exp_avg'],
                    state['exp_avg_sq']))
    for a, b in zip(*out):
        assert torch.equal(a, b)
    assert not torch.equal(out[0][0], start)


@pytest.mark.parametrize('dense', [True, False])
def test_sparse_row_adam_chunks_change_no_bit(dense, monkeypatch):
    # The rows are updated a chunk at a time: with chunks of one row, two
    # rows or all rows, the same bits.
    from diffkg_pyg import optim
    torch.manual_seed(0)
    start = torch.randn(7, 3)
    grads = [torch.randn(7, 3) for _ in range(3)]
    # Rows 0 and 1 lead (updated in place, the rest gathered):
    index = torch.tensor([1, 0, 1, 5, 6] if not dense else [0] * 5)
    out = []
    for elements in (1, 6, 9, 1 << 18):
        monkeypatch.setattr(optim, 'ROW_CHUNK_ELEMENTS', elements)
        parameter = torch.nn.Parameter(start.clone())
        optimizer = SparseRowAdam([parameter], lr=0.1)
        for grad in grads:
            parameter.grad = grad.clone() if dense else \
                torch.sparse_coo_tensor(index[None], grad[:5], (7, 3))
            optimizer.step()
        out.append(parameter.detach().clone())
    for other in out[:-1]:
        assert torch.equal(other, out[-1])
    assert not torch.equal(out[-1], start)
    # And the bits of the update with every row gathered (the rule as
    # SparseRowAdam wrote it before rows were chunked or updated in place):
    weight = start.clone()
    exp_avg, exp_avg_sq = torch.zeros(7, 3), torch.zeros(7, 3)
    for step, grad in enumerate(grads, 1):
        rows = torch.arange(7) if dense else index
        rows, inverse = torch.unique(rows, return_inverse=True)
        row_grad = torch.zeros(rows.numel(), 3).index_add_(
            0, inverse, grad if dense else grad[:5])
        avg = exp_avg.index_select(0, rows).lerp_(row_grad, 0.1)
        avg_sq = exp_avg_sq.index_select(0, rows).mul_(0.999).addcmul_(
            row_grad, row_grad, value=0.001)
        exp_avg.index_copy_(0, rows, avg)
        exp_avg_sq.index_copy_(0, rows, avg_sq)
        size = 0.1 * math.sqrt(1 - 0.999**step) / (1 - 0.9**step)
        weight.index_add_(0, rows, avg.div_(avg_sq.sqrt_().add_(1e-8)),
                          alpha=-size)
    assert torch.equal(weight, out[-1])
