import pytest
import torch
import torch.nn.functional as F

from diffkg_pyg.nn import KGAttentionConv, KGEncoder
from diffkg_pyg.testing import PerEdgeAttention, literal_hop


@pytest.mark.parametrize('seed', [0, 1])
# 12 nodes x 5 relations against edges x 8 channels: 1 edge takes the
# per-edge score, 40 edges the per-node, per-relation score tables.
@pytest.mark.parametrize('num_edges', [1, 40])
def test_kg_attention_conv_matches_formula(seed, num_edges):
    torch.manual_seed(seed)
    x = torch.randn(12, 8, requires_grad=True)
    edge_index = torch.randint(12, (2, num_edges))
    edge_type = torch.randint(5, (num_edges, ))
    relation_emb = torch.randn(5, 8, requires_grad=True)
    conv = KGAttentionConv(8)
    out = conv(x, edge_index, edge_type, relation_emb)
    expected = literal_hop(x, edge_index, edge_type, relation_emb,
                           conv.weight)
    assert out.shape == (12, 8)
    assert torch.allclose(out, expected, atol=1e-5)
    assert str(conv) == 'KGAttentionConv(8)'
    inputs = (x, relation_emb, conv.weight)
    grad_out = torch.randn(12, 8)
    grads = torch.autograd.grad(out, inputs, grad_out)
    expected_grads = torch.autograd.grad(expected, inputs, grad_out)
    for grad, expected_grad in zip(grads, expected_grads):
        assert torch.allclose(grad, expected_grad, atol=1e-5)


@pytest.mark.parametrize('num_hops,res_lambda', [(1, 0.5), (2, 0.0),
                                                 (2, 1.0)])
def test_kg_encoder(num_hops, res_lambda):
    torch.manual_seed(0)
    x = torch.randn(10, 4)
    edge_index = torch.randint(10, (2, 30))
    edge_type = torch.randint(3, (30, ))
    relation_emb = torch.randn(3, 4)
    encoder = KGEncoder(4, num_hops, dropout=0.5, res_lambda=res_lambda)
    encoder.eval()
    out = encoder(x, relation_emb, edge_index, edge_type)
    expected, e = x, x
    for _ in range(num_hops):
        e = F.normalize(literal_hop(e, edge_index, edge_type, relation_emb,
                                    encoder.conv.weight), dim=-1)
        expected = res_lambda * expected + e
    assert torch.allclose(out, expected, atol=1e-5)
    encoder.train()  # Dropout changes the training output:
    assert not torch.allclose(
        encoder(x, relation_emb, edge_index, edge_type), out)


def test_kg_encoder_bad_arguments():
    with pytest.raises(ValueError, match="'num_hops' must be >= 1"):
        KGEncoder(4, num_hops=0)
    with pytest.raises(ValueError, match="'dropout' must lie in"):
        KGEncoder(4, dropout=1.0)


def test_per_edge_reference_matches_the_layer():
    # The benchmarks' per-edge form computes the same hop.
    torch.manual_seed(0)
    x = torch.randn(12, 8)
    edge_index = torch.randint(12, (2, 40))
    edge_type = torch.randint(5, (40, ))
    relation_emb = torch.randn(5, 8)
    conv = KGAttentionConv(8)
    reference = PerEdgeAttention(8)
    reference.weight = conv.weight
    assert torch.allclose(reference(x, edge_index, edge_type, relation_emb),
                          conv(x, edge_index, edge_type, relation_emb),
                          atol=1e-5)
