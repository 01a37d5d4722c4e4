import pytest
import torch

from diffkg_pyg.nn import SparseDenoiser
from diffkg_pyg.nn.denoiser import timestep_embedding
from diffkg_pyg.testing import dense_denoiser


@pytest.mark.parametrize('seed', [0, 1])
@pytest.mark.parametrize('num_entities,hidden', [(7, 5), (30, 16)])
def test_full_support_equals_dense(seed, num_entities, hidden):
    torch.manual_seed(seed)
    model = SparseDenoiser(num_entities, hidden, time_channels=4).eval()
    batch_size = 3
    x = torch.randn(batch_size, num_entities)
    t = torch.tensor([0, 2, 4])
    ptr = torch.arange(batch_size + 1) * num_entities
    index = torch.arange(num_entities).repeat(batch_size)
    out = model(x.view(-1), ptr, index, t).view(batch_size, num_entities)
    expected = dense_denoiser(model, x, t)
    assert torch.allclose(out, expected, atol=1e-5)

    # Gradients agree as well:
    out.square().sum().backward()
    sparse_grad = model.output_emb.weight.grad.to_dense()
    model.zero_grad()
    dense_denoiser(model, x, t).square().sum().backward()
    assert torch.allclose(sparse_grad, model.output_emb.weight.grad,
                          atol=1e-5)


def test_partial_support_and_sparse_gradients():
    torch.manual_seed(0)
    model = SparseDenoiser(50, 8, time_channels=4)
    ptr = torch.tensor([0, 2, 5])
    index = torch.tensor([3, 7, 1, 3, 9])
    x = torch.rand(5)
    out = model(x, ptr, index, torch.tensor([1, 0]))
    assert out.shape == (5, )
    out.sum().backward()
    grad = model.output_emb.weight.grad
    assert grad.is_sparse
    assert set(grad.coalesce().indices().view(-1).tolist()) == {1, 3, 7, 9}
    assert repr(model) == 'SparseDenoiser(50, hidden_channels=8, ' \
        'time_channels=4)'


def test_timestep_embedding():
    emb = timestep_embedding(torch.tensor([0, 3]), 10)
    assert emb.shape == (2, 10)
    assert torch.allclose(emb[0], torch.tensor([1.0] * 5 + [0.0] * 5))
    assert emb[1, 0] == pytest.approx(torch.cos(torch.tensor(3.0)).item())


@pytest.mark.parametrize('kwargs,match', [
    (dict(time_channels=3), "'time_channels' must be even"),
    (dict(dropout=1.0), "'dropout' must lie in"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SparseDenoiser(10, **kwargs)
