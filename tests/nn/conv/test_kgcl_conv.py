r"""KGCLConv against a literal transcription of the authors'
``GraphAttentionLayer.forward_relation`` (``code/GAT.py``), forward and
gradients."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from diffkg_pyg.nn.conv import KGCLConv


def literal_forward_relation(conv, item_embs, entity_embs, relations, adj):
    # Without dropout (the layer in eval mode); `fc` is our conv.lin.
    Wh = item_embs.unsqueeze(1).expand(entity_embs.size())
    We = entity_embs
    a_input = torch.cat((Wh, We), dim=-1)
    e_input = torch.multiply(conv.lin(a_input), relations).sum(-1)
    e = nn.LeakyReLU(0.2)(e_input)
    zero_vec = -9e15 * torch.ones_like(e)
    attention = torch.where(adj > 0, e, zero_vec)
    attention = F.softmax(attention, dim=1)
    entity_emb_weighted = torch.bmm(attention.unsqueeze(1),
                                    entity_embs).squeeze()
    return entity_emb_weighted + item_embs


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_kgcl_conv_matches_the_authors_layer(seed):
    torch.manual_seed(seed)
    num_items, slots, dim = 6, 4, 5
    conv = KGCLConv(dim).double().eval()
    x = torch.randn(num_items, dim, dtype=torch.double, requires_grad=True)
    entity = torch.randn(num_items, slots, dim, dtype=torch.double,
                         requires_grad=True)
    relation = torch.randn(num_items, slots, dim, dtype=torch.double,
                           requires_grad=True)
    adj = (torch.rand(num_items, slots) > 0.4).double()
    adj[0] = 0  # An item whose slots are all padding.
    adj[1] = 1
    item = torch.arange(num_items).repeat_interleave(slots)
    edge_index = torch.stack([item, torch.arange(num_items * slots)])
    out = conv(x, entity.reshape(-1, dim), edge_index,
               relation.reshape(-1, dim), adj.reshape(-1) > 0)
    expected = literal_forward_relation(conv, x, entity, relation, adj)
    assert torch.allclose(out, expected, atol=1e-12)
    assert torch.allclose(out[0], x[0] + entity[0].mean(dim=0))
    params = [x, entity, relation] + list(conv.parameters())
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, params, grad_out)
    expected_grads = torch.autograd.grad(expected, params, grad_out)
    for grad, expected_grad in zip(grads, expected_grads):
        assert torch.allclose(grad, expected_grad, atol=1e-12)
    assert repr(conv) == 'KGCLConv(5)'


def test_kgcl_conv_drops_attention_in_training():
    torch.manual_seed(0)
    conv = KGCLConv(3, dropout=0.5)
    x, entity = torch.randn(2, 3), torch.randn(4, 3)
    edge_index = torch.tensor([[0, 0, 1, 1], [0, 1, 2, 3]])
    mask = torch.ones(4, dtype=torch.bool)
    outs = {tuple(conv(x, entity, edge_index, entity, mask).view(-1)
                  .tolist()) for _ in range(10)}
    assert len(outs) > 1
    conv.eval()
    assert len({tuple(conv(x, entity, edge_index, entity, mask).view(-1)
                      .tolist()) for _ in range(3)}) == 1
