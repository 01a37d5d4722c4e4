import pytest
import torch

from diffkg_pyg.data.graph import bipartite_adjacency
from diffkg_pyg.nn.functional import symmetric_propagation


def user_item_adjacency(seed):
    r"""A random 5-user, 7-item graph's normalised adjacency (float64),
    as a CSR tensor and dense."""
    generator = torch.Generator().manual_seed(seed)
    pairs = torch.stack([torch.randint(5, (15, ), generator=generator),
                         torch.randint(7, (15, ), generator=generator)])
    adj = bipartite_adjacency(pairs.unique(dim=1), 5, 7,
                              add_self_loops=True).to(torch.float64)
    return adj.to_dense(), adj


@pytest.mark.parametrize('num_layers', [0, 1, 2, 3])
def test_symmetric_propagation_is_the_sum_of_powers(num_layers):
    dense, adj = user_item_adjacency(seed=num_layers)
    x = torch.randn(12, 5, dtype=torch.float64, requires_grad=True)
    before = x.detach().clone()
    out = symmetric_propagation(adj, x, num_layers)
    expected = sum(torch.linalg.matrix_power(dense, layer) @ x
                   for layer in range(num_layers + 1))
    assert torch.allclose(out, expected)
    assert torch.equal(x.detach(), before)  # The input is left alone.
    grad = torch.randn(12, 5, dtype=torch.float64)
    got, = torch.autograd.grad(out, x, grad)
    want, = torch.autograd.grad(expected, x, grad)
    assert torch.allclose(got, want)
