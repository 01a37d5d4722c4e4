r"""KGATConv against a literal transcription of the KGAT PyTorch port's
Aggregator (``model/KGAT.py``), forward and gradients."""
import pytest
import torch
from torch import nn

from diffkg_pyg.nn.conv import KGATConv


def literal_aggregator(conv, ego_embeddings, A_in):
    # The port's Aggregator.forward without its dropout, with our conv's
    # linear layers as its linear, linear1 and linear2.
    activation = nn.LeakyReLU()
    side_embeddings = torch.matmul(A_in, ego_embeddings)
    if conv.aggregator == 'gcn':
        embeddings = ego_embeddings + side_embeddings
        embeddings = activation(conv.lin1(embeddings))
    elif conv.aggregator == 'graphsage':
        embeddings = torch.cat([ego_embeddings, side_embeddings], dim=1)
        embeddings = activation(conv.lin1(embeddings))
    else:
        sum_embeddings = activation(conv.lin1(ego_embeddings +
                                              side_embeddings))
        bi_embeddings = activation(conv.lin2(ego_embeddings *
                                             side_embeddings))
        embeddings = bi_embeddings + sum_embeddings
    return embeddings


@pytest.mark.parametrize('aggregator', ['bi-interaction', 'gcn',
                                        'graphsage'])
@pytest.mark.parametrize('seed', [0, 1])
def test_kgat_conv_matches_the_port(aggregator, seed):
    torch.manual_seed(seed)
    x = torch.randn(10, 6, requires_grad=True)
    pairs = torch.unique(torch.randint(10, (2, 30)), dim=1)
    weight = torch.rand(pairs.size(1))
    conv = KGATConv(6, 4, aggregator)
    out = conv(x, pairs, weight)
    A_in = torch.sparse_coo_tensor(pairs, weight, (10, 10),
                                   check_invariants=True)
    expected = literal_aggregator(conv, x, A_in)
    assert out.shape == (10, 4)
    assert torch.allclose(out, expected, atol=1e-6)
    params = [x] + list(conv.parameters())
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, params, grad_out)
    expected_grads = torch.autograd.grad(expected, params, grad_out)
    for grad, expected_grad in zip(grads, expected_grads):
        assert torch.allclose(grad, expected_grad, atol=1e-5)


def test_kgat_conv_layers_and_errors():
    assert KGATConv(6, 4).lin2 is not None
    assert KGATConv(6, 4, 'graphsage').lin1.in_features == 12
    assert KGATConv(6, 4, 'gcn').lin2 is None
    assert repr(KGATConv(6, 4, 'gcn')) == \
        "KGATConv(6, 4, aggregator='gcn')"
    with pytest.raises(ValueError, match="'aggregator' must be one of"):
        KGATConv(6, 4, 'lstm')
