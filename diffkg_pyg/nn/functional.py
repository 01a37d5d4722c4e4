r"""Functional building blocks of the package's models."""
from contextlib import contextmanager
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from diffkg_pyg.csr import gather_rows

__all__ = ['symmetric_propagation', 'info_nce', 'top_k_unseen',
           'top_k_inner_product', 'mips_index', 'check_faiss',
           'check_user_index']

#: The largest number of neighbours faiss returns in one search.
FAISS_MAX_K = 2048


class _SymmetricPropagation(torch.autograd.Function):
    @staticmethod
    def forward(ctx, adj: Tensor, x: Tensor, num_layers: int) -> Tensor:
        ctx.adj, ctx.num_layers = adj, num_layers
        # (x + A x) + A (A x), each product written straight into its output
        # (a plain `adj @ x` zero-fills a buffer and copies it once more).
        h = torch.addmm(x, adj, x, beta=0)
        out = x + h
        for layer in range(1, num_layers):
            if layer == num_layers - 1:  # The last product adds into the sum.
                return torch.addmm(out, adj, h, out=out)
            h = torch.addmm(h, adj, h, beta=0)
            out += h
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        # The transpose of sum_l A^l is itself: g + A (g + A (g + ...)).
        h = grad
        for _ in range(ctx.num_layers):
            h = torch.addmm(grad, ctx.adj, h)
        return None, h, None


def symmetric_propagation(adj: Tensor, x: Tensor, num_layers: int) -> Tensor:
    r""":math:`\sum_{l=0}^{L} \mathbf{A}^l \mathbf{X}`, the sum of the
    layer outputs of :math:`L` parameter-free propagations
    :math:`\mathbf{X}^{(l+1)} = \mathbf{A} \mathbf{X}^{(l)}` (DiffKG's
    user-item propagation, LightGCN's without the mean). The gradient
    :math:`\sum_l \mathbf{A}^l \mathbf{G}` is computed as
    :math:`\mathbf{G} + \mathbf{A}(\mathbf{G} + \mathbf{A}(\dots))`
    without transposing the sparse matrix and without keeping any layer's
    output, and each product is written straight into its output.

    Args:
        adj (torch.Tensor): A symmetric sparse matrix :obj:`[N, N]` (CSR
            preferred; no gradient).
        x (torch.Tensor): Dense features :obj:`[N, F]`.
        num_layers (int): :math:`L \geq 0`.

    Returns:
        :obj:`[N, F]`.
    """
    if num_layers == 0:
        return x
    return _SymmetricPropagation.apply(adj, x, num_layers)


# exp(s - bound) for |s| <= bound stays a normal float32 number down to
# s = -bound when 2 * bound <= 80 (exp(-80) = 1.8e-35 > 1.2e-38).
_FIXED_SHIFT_MAX = 40.0


class _LogSumExpScores(torch.autograd.Function):
    r""":math:`\log \sum_v \exp(\mathbf{a}_b^\top \mathbf{p}_v)` for
    anchors of norm :obj:`bound` and positives of norm 1, so that every
    score lies in :math:`[-b, b]`: the exponentials are shifted by
    :math:`b` (or, for :math:`b > 40`, by each anchor's largest score)
    instead of by a maximum taken in a separate pass, computed chunk by
    chunk into one :obj:`[V, B]` buffer and kept for the backward pass,
    whose two gradients are then one product each
    (:math:`\nabla_{\mathbf{a}_b} = \sum_v \pi_{bv} \mathbf{p}_v`,
    :math:`\nabla_{\mathbf{p}_v} = \sum_b \pi_{bv} \mathbf{a}_b` with
    :math:`\pi` the softmax, times the incoming gradient)."""
    @staticmethod
    def forward(ctx, anchor: Tensor, positive: Tensor, bound: float,
                chunk_size: int) -> Tensor:
        chunks = range(0, positive.size(0), chunk_size)
        if bound <= _FIXED_SHIFT_MAX:
            shift = anchor.new_full((anchor.size(0), ), bound)
        else:  # A pass for the maxima: small temperatures only.
            shift = torch.stack([
                (positive[i:i + chunk_size] @ anchor.t()).amax(dim=0)
                for i in chunks]).amax(dim=0)
        keep = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        buffer = positive.new_empty(positive.size(0), anchor.size(0)) \
            if keep else None
        total = anchor.new_zeros(anchor.size(0))
        for i in chunks:
            part = positive[i:i + chunk_size]
            out = buffer[i:i + part.size(0)] if keep else None
            scores = torch.mm(part, anchor.t(), out=out)
            total += scores.sub_(shift).exp_().sum(dim=0)
        ctx.save_for_backward(anchor, positive, buffer, total)
        return total.log() + shift

    @staticmethod
    def backward(ctx, grad: Tensor):
        anchor, positive, buffer, total = ctx.saved_tensors
        weight = (grad / total).unsqueeze(-1)  # [B, 1]
        grad_anchor = grad_positive = None
        if ctx.needs_input_grad[0]:
            grad_anchor = (buffer.t() @ positive) * weight
        if ctx.needs_input_grad[1]:
            grad_positive = buffer @ (anchor * weight)
        return grad_anchor, grad_positive, None, None


def info_nce(anchor: Tensor, positive: Tensor, index: Tensor,
             temperature: float, chunk_size: int = 1024) -> Tensor:
    r"""The InfoNCE loss of the nodes :obj:`index`: anchors from
    :obj:`anchor`, positives the same rows of :obj:`positive`, negatives
    all rows of :obj:`positive`, on L2-normalised embeddings at temperature
    :math:`\tau`,

    .. math::
        \frac{1}{|B|} \sum_{b \in B} \left(\log \sum_{v}
        e^{\mathbf{a}_b^\top \mathbf{p}_v / \tau} -
        \mathbf{a}_b^\top \mathbf{p}_b / \tau\right)

    (the authors' :obj:`contrastLoss`). Since the embeddings are
    normalised, every score lies in :math:`[-1/\tau, 1/\tau]`: the
    log-sum-exp is shifted by :math:`1/\tau` rather than by a row maximum
    (the same value in exact arithmetic), computed :obj:`chunk_size`
    negatives at a time, and its exponentials are kept for the backward
    pass, one :obj:`[num_nodes, |B|]` float array (470 MB for
    Alibaba-iFashion's users at :math:`|B| = 1024`) instead of recomputing
    the scores."""
    anchor = F.normalize(anchor[index] + 1e-8, dim=-1) / temperature
    positive = F.normalize(positive + 1e-8, dim=-1)
    lse = _LogSumExpScores.apply(anchor, positive, 1.0 / temperature,
                                 chunk_size)
    return (lse - (anchor * positive[index]).sum(dim=-1)).mean()


def check_user_index(user_index: Tensor, num_users: int) -> Tensor:
    r""":obj:`user_index` as a vector, raising :class:`ValueError` unless
    every id lies in :obj:`[0, num_users)`."""
    if user_index.dtype.is_floating_point or user_index.dtype == torch.bool:
        raise ValueError(f"'user_index' must hold integer user ids (got "
                         f'{user_index.dtype})')
    user_index = user_index.view(-1)
    if user_index.numel() and not (0 <= int(user_index.min()) and
                                   int(user_index.max()) < num_users):
        raise ValueError(f"'user_index' must lie in [0, {num_users - 1}] "
                         f"(got values in [{int(user_index.min())}, "
                         f"{int(user_index.max())}])")
    return user_index


def top_k_unseen(score: Tensor, user_index: Tensor, k: int,
                 seen_ptr: Optional[Tensor] = None,
                 seen_col: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    r"""The top-:obj:`k` items of every row of :obj:`score`
    :obj:`[B, num_items]` (the scores of the users :obj:`user_index`
    :obj:`[B]`), leaving out each user's items of the CSR
    :obj:`(seen_ptr, seen_col)` (by user; none when :obj:`None`): item
    indices and scores, both :obj:`[B, k]`, best first. A user with fewer
    than :obj:`k` unseen items gets them all, then item :obj:`-1` with
    score :obj:`-inf` in the places left (never a seen item)."""
    num_items = score.size(-1)
    if not 1 <= k <= num_items:
        raise ValueError(f"'k' must be in [1, num_items] = [1, {num_items}] "
                         f'(got {k})')
    if seen_ptr is not None:
        score = score.clone()
        row, col = gather_rows(seen_ptr, seen_col, user_index.to(
            seen_ptr.device))
        score[row.to(score.device), col.to(score.device)] = float('-inf')
    score, item = score.topk(k, dim=-1)
    if seen_ptr is not None:
        # Past a user's unseen items, topk returns seen ones at -inf.
        item = item.masked_fill(score == float('-inf'), -1)
    return item, score


def check_faiss():
    r"""The :obj:`faiss` module that :func:`mips_index` needs; raises
    :class:`ImportError` with the package to install when it is missing."""
    try:
        import faiss
    except ImportError:
        raise ImportError("MIPS top-K needs faiss: pip install faiss-cpu "
                          "(or diffkg-pyg[knn])") from None
    return faiss


def mips_index(item_emb: Tensor):
    r"""A :class:`torch_geometric.nn.pool.MIPSKNNIndex` (exact maximum inner
    product search through :obj:`faiss`) over the item embeddings
    :obj:`item_emb` :obj:`[num_items, dim]`, for
    :func:`top_k_inner_product`; on the CPU unless the installed
    :obj:`faiss` has GPU support (:func:`check_faiss` when it is
    missing)."""
    faiss = check_faiss()
    from torch_geometric.nn.pool import MIPSKNNIndex
    if not hasattr(faiss, 'StandardGpuResources'):
        item_emb = item_emb.cpu()
    return MIPSKNNIndex(item_emb.detach().float().contiguous())


def top_k_inner_product(user_emb: Tensor, item_emb: Tensor,
                        user_index: Tensor, k: int,
                        seen_ptr: Optional[Tensor] = None,
                        seen_col: Optional[Tensor] = None,
                        index=None) -> Tuple[Tensor, Tensor]:
    r"""The top-:obj:`k` items of the users :obj:`user_index` :obj:`[B]`
    by the inner products of :obj:`user_emb` :obj:`[num_users, dim]` and
    :obj:`item_emb` :obj:`[num_items, dim]`, leaving out the seen items of
    the CSR :obj:`(seen_ptr, seen_col)`, exactly as :func:`top_k_unseen` on
    :math:`\mathbf{E}_u \mathbf{E}_i^{\top}` (item indices and scores,
    both :obj:`[B, k]`, best first, item :obj:`-1` at :obj:`-inf` past a
    user's unseen items).

    With :obj:`index` (from :func:`mips_index` on :obj:`item_emb`) the
    search runs through faiss's exact inner-product index, which keeps only
    each user's best items instead of the :obj:`[B, num_items]` scores. A
    user who has seen :math:`d` items needs the best :math:`k + d`, so the
    users are searched in groups of similar :math:`d` (powers of two); a
    group for which that exceeds faiss's limit of 2,048 is scored in full.
    The lists are the same either way, up to floating-point ties.
    """
    num_items = item_emb.size(0)
    if not 1 <= k <= num_items:
        raise ValueError(f"'k' must be in [1, num_items] = [1, {num_items}] "
                         f'(got {k})')
    query = user_emb[user_index.to(user_emb.device)]
    if index is None or k > FAISS_MAX_K:
        return top_k_unseen(query @ item_emb.t(), user_index, k, seen_ptr,
                            seen_col)
    # A faiss GPU index (getDevice) searches on its card, others on the CPU:
    where = query.device if hasattr(index.index, 'getDevice') else 'cpu'
    item = torch.full((query.size(0), k), -1, dtype=torch.long,
                      device=where)
    score = torch.full((query.size(0), k), float('-inf'), device=where)
    if seen_ptr is None:
        groups = [torch.arange(query.size(0), device=where)]
        degree = torch.zeros(query.size(0), dtype=torch.long, device=where)
    else:
        rows = user_index.to(seen_ptr.device)
        degree = (seen_ptr[rows + 1] - seen_ptr[rows]).to(where)
        group = torch.frexp(degree.double())[1]  # floor(log2 d) + 1
        groups = [(group == g).nonzero().view(-1)
                  for g in group.unique().tolist()]
    with _faiss_blas():
        for members in groups:
            if not members.numel():  # (No user asked.)
                continue
            users = user_index[members.to(user_index.device)]
            if k + int(degree[members].max()) > FAISS_MAX_K:
                out = top_k_unseen(query[members.to(query.device)] @
                                   item_emb.t(), users, k, seen_ptr,
                                   seen_col)
                out = (t.to(where) for t in out)
            else:
                exclude = None if seen_ptr is None else torch.stack(
                    gather_rows(seen_ptr, seen_col,
                                users.to(seen_ptr.device))).to(where)
                found = index.search(
                    query[members.to(query.device)].detach().float()
                    .contiguous().to(where), k, exclude)
                out = found.index, found.score
            item[members], score[members] = out
    return item.to(query.device), score.to(query.device)


@contextmanager
def _faiss_blas():
    # faiss scores a flat index with BLAS only from its threshold of
    # queries on (128,000 in faiss-cpu 1.15, so never for a batch), else
    # with a per-pair kernel about 3x slower here; set for the search only.
    import faiss
    before = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = 20
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_threshold = before
