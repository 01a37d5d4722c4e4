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


def random_seen(score, degrees, seed):
    # A CSR of distinct seen items per user, with the given degrees: random
    # ones, a user's best-scored ones when it sees over 1,000 (the case
    # where a search capped at 2,048 neighbours would come up short).
    generator = torch.Generator().manual_seed(seed)
    cols = [score[u].argsort(descending=True)[:d] if d > 1000 else
            torch.randperm(score.size(1), generator=generator)[:d]
            for u, d in enumerate(degrees)]
    ptr = torch.tensor([0] + degrees).cumsum(0)
    return ptr, torch.cat(cols)


@pytest.mark.parametrize('num_items,k,degrees', [
    (40, 5, [0, 3, 10, 37, 40, 1]),   # fewer unseen than k, none at all
    (40, 40, [0, 3, 10, 37, 40, 1]),  # k = every item
    (3000, 20, [5, 2040, 0, 7]),      # k + 2040 over faiss' 2048: exact
    (3000, 2049, [0, 1, 0, 0]),       # k itself over the limit: exact
])
@pytest.mark.parametrize('exclude', [True, False])
def test_mips_top_k_gives_the_exact_lists(num_items, k, degrees, exclude):
    pytest.importorskip('faiss')
    from diffkg_pyg.nn.functional import (
        mips_index,
        top_k_inner_product,
        top_k_unseen,
    )
    generator = torch.Generator().manual_seed(num_items + k)
    user_emb = torch.randn(len(degrees), 16, generator=generator)
    item_emb = torch.randn(num_items, 16, generator=generator)
    seen = random_seen(user_emb @ item_emb.t(), degrees, 0) if exclude \
        else (None, None)
    users = torch.tensor([3, 0, 1, 2] + list(range(4, len(degrees))))
    expected = top_k_unseen(user_emb[users] @ item_emb.t(), users, k, *seen)
    exact = top_k_inner_product(user_emb, item_emb, users, k, *seen)
    mips = top_k_inner_product(user_emb, item_emb, users, k, *seen,
                               index=mips_index(item_emb))
    for got in (exact, mips):
        assert torch.equal(got[0], expected[0])
        assert torch.allclose(got[1], expected[1], rtol=1e-5, atol=1e-5)
    none = top_k_inner_product(user_emb, item_emb, users[:0], k, *seen,
                               index=mips_index(item_emb))
    assert none[0].shape == none[1].shape == (0, k)
    if exclude:  # Never a seen item; -1 past the unseen ones.
        for row, user in enumerate(users.tolist()):
            mine = set(seen[1][seen[0][user]:seen[0][user + 1]].tolist())
            items = mips[0][row]
            assert not mine & set(items.tolist())
            assert int((items >= 0).sum()) == min(k, num_items - len(mine))
