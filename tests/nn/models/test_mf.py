import pytest
import torch
import torch.nn.functional as F

from diffkg_pyg.nn.models import MF


def test_mf_scores_and_loss():
    model = MF(5, 7, embedding_dim=4)
    assert repr(model) == 'MF(5, 7, embedding_dim=4)'
    pairs = torch.tensor([[0, 4], [6, 1]])
    assert torch.allclose(model(pairs), (model.user_emb[pairs[0]] *
                                         model.item_emb[pairs[1]]).sum(-1))
    user, pos, neg = torch.tensor([0, 1]), torch.tensor([2, 3]), \
        torch.tensor([4, 5])
    loss, bpr = model.loss(user, pos, neg, l2_weight=0.5)
    u, i, j = model.user_emb[user], model.item_emb[pos], model.item_emb[neg]
    expected = -F.logsigmoid((u * i).sum(-1) - (u * j).sum(-1)).mean()
    assert torch.allclose(bpr, expected)
    l2 = (u.square().sum(-1) + i.square().sum(-1) + j.square().sum(-1))
    assert torch.allclose(loss, expected + 0.5 * l2.mean())
    loss.backward()
    assert model.user_emb.grad[2:].abs().sum() == 0  # Only the batch's rows.


@pytest.mark.parametrize('kwargs', [dict(num_users=0), dict(embedding_dim=0)])
def test_mf_bad_sizes(kwargs):
    with pytest.raises(ValueError, match='must be >= 1'):
        MF(**{'num_users': 3, 'num_items': 4, **kwargs})
