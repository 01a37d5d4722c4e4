r"""Functional building blocks of the package's models."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from diffkg_pyg.utils import gather_rows

__all__ = ['symmetric_spmm', 'info_nce', 'top_k_unseen', 'check_user_index']


class _SymmetricSpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, adj: Tensor, x: Tensor) -> Tensor:
        ctx.adj = adj
        return adj @ x

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, ctx.adj @ grad


def symmetric_spmm(adj: Tensor, x: Tensor) -> Tensor:
    r""":math:`\mathbf{A} \mathbf{X}` for a symmetric sparse
    :math:`\mathbf{A}` (no gradient) and dense :math:`\mathbf{X}`, whose
    gradient :math:`\mathbf{A}^\top \mathbf{G} = \mathbf{A} \mathbf{G}` is
    computed without transposing the sparse matrix (twice as fast as
    autograd's for a CSR matrix). :obj:`adj` must be symmetric."""
    return _SymmetricSpMM.apply(adj, x)


def _logsumexp_scores(anchor: Tensor, positive: Tensor) -> Tensor:
    return torch.logsumexp(anchor @ positive.t(), dim=-1)


def info_nce(anchor: Tensor, positive: Tensor, index: Tensor,
             temperature: float, chunk_size: int = 4096) -> Tensor:
    r"""The InfoNCE loss of the nodes :obj:`index`: anchors from
    :obj:`anchor`, positives the same rows of :obj:`positive`, negatives
    all rows of :obj:`positive`, on L2-normalised embeddings at temperature
    :math:`\tau`,

    .. math::
        \frac{1}{|B|} \sum_{b \in B} \left(\log \sum_{v}
        e^{\mathbf{a}_b^\top \mathbf{p}_v / \tau} -
        \mathbf{a}_b^\top \mathbf{p}_b / \tau\right)

    (the authors' :obj:`contrastLoss`). The log-sum-exp runs over
    :obj:`chunk_size` negatives at a time and is recomputed in the backward
    pass, so no :obj:`[|B|, num_nodes]` matrix is ever held (on
    Alibaba-iFashion's users that matrix is 470 MB per copy)."""
    anchor = F.normalize(anchor[index] + 1e-8, dim=-1) / temperature
    positive = F.normalize(positive + 1e-8, dim=-1)
    lse = [checkpoint(_logsumexp_scores, anchor, part, use_reentrant=False)
           for part in torch.split(positive, chunk_size)]
    lse = torch.logsumexp(torch.stack(lse, dim=-1), dim=-1)
    return (lse - (anchor * positive[index]).sum(dim=-1)).mean()


def check_user_index(user_index: Tensor, num_users: int) -> Tensor:
    r""":obj:`user_index` as a vector, raising :class:`ValueError` unless
    every id lies in :obj:`[0, num_users)`."""
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
    indices and scores, both :obj:`[B, k]`, best first."""
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
    return item, score
