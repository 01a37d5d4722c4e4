r"""Edge-level knowledge-graph diffusion: support sampling, the denoiser
objective (diffusion + CKGC) and the rebuild of the denoised KG, all
vectorised (no loop over heads or edges)."""
from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.utils import cumsum, scatter

from diffkg_pyg.nn.denoiser import SparseDenoiser
from diffkg_pyg.nn.diffusion import GaussianDiffusion
from diffkg_pyg.utils import gather_rows, rows_of

__all__ = ['Support', 'sample_support', 'denoiser_loss', 'segment_top_k',
           'rebuild_kg']


class Support(NamedTuple):
    r"""Support entries of a batch of heads, grouped by head.

    Attributes:
        ptr: Row pointer :obj:`[batch_size + 1]`.
        index: Entity of every entry :obj:`[num_support]`.
        target: :math:`\mathbf{x}_0` at the entry (1 for a KG edge, 0 for a
            sampled non-edge).
        weight: Importance weight of the entry (1 for edges, :math:`(N -
            d_h) / (m\, d_h)` for the :math:`m\, d_h` sampled non-edges of a
            head of degree :math:`d_h`), so that weighted sums over the
            support estimate sums over all :math:`N` entities unbiasedly.
    """
    ptr: Tensor
    index: Tensor
    target: Tensor
    weight: Tensor


def sample_support(kg_ptr: Tensor, kg_col: Tensor, heads: Tensor,
                   num_entities: int, num_negatives: int = 1,
                   generator: Optional[torch.Generator] = None) -> Support:
    r"""Builds the support of :obj:`heads`: their KG edges plus
    :obj:`num_negatives` non-edges per edge, drawn uniformly without
    rejection among the head's non-edges.

    Args:
        kg_ptr (torch.Tensor): CSR row pointer of the KG by head
            :obj:`[num_entities + 1]`.
        kg_col (torch.Tensor): Tails, sorted within every head.
        heads (torch.Tensor): The batch's heads :obj:`[batch_size]`.
        num_entities (int): :math:`N`.
        num_negatives (int, optional): :math:`m`. (default: :obj:`1`)
        generator (torch.Generator, optional): The random generator.
    """
    if num_negatives < 1:
        raise ValueError(
            f"'num_negatives' must be >= 1 (got {num_negatives})")
    device = heads.device
    edge_row, edge_col = gather_rows(kg_ptr, kg_col, heads)
    degree = kg_ptr[heads + 1] - kg_ptr[heads]
    num_free = num_entities - degree
    num_neg = torch.minimum(degree * num_negatives, num_free)
    neg_row = torch.repeat_interleave(
        torch.arange(heads.numel(), device=device), num_neg)
    # The r-th non-edge of a head is r + #{j : c_j - j <= r} for its sorted
    # edges c_j; one searchsorted over all heads at once (rows offset by
    # N + 1 so that they do not mix).
    rank = (torch.rand(neg_row.numel(), generator=generator, device=device)
            * num_free[neg_row]).long()
    edge_ptr = cumsum(degree)
    local = torch.arange(edge_col.numel(), device=device) - edge_ptr[edge_row]
    shift = edge_col - local + edge_row * (num_entities + 1)
    query = rank + neg_row * (num_entities + 1)
    below = torch.searchsorted(shift, query, right=True) - edge_ptr[neg_row]
    neg_col = rank + below

    weight = (num_free.float() / num_neg.clamp(min=1).float())[neg_row]
    row = torch.cat([edge_row, neg_row])
    perm = torch.argsort(row, stable=True)
    ptr = cumsum(degree + num_neg)
    return Support(
        ptr=ptr,
        index=torch.cat([edge_col, neg_col])[perm],
        target=torch.cat([torch.ones_like(edge_col, dtype=torch.float),
                          torch.zeros_like(neg_col, dtype=torch.float)])[perm],
        weight=torch.cat([torch.ones_like(edge_col, dtype=torch.float),
                          weight])[perm],
    )


def denoiser_loss(denoiser: SparseDenoiser, diffusion: GaussianDiffusion,
                  support: Support, t: Tensor, item_user_emb: Tensor,
                  head_emb: Tensor, ckgc_weight: float = 0.5,
                  noise: Optional[Tensor] = None
                  ) -> Tuple[Tensor, Tensor, Tensor]:
    r"""The denoiser objective of DiffKG on a batch of heads,

    .. math::
        (1 - \lambda_0)\, \mathrm{mean}_h\, w_{t_h}
        \frac{1}{N}\sum_{e} (x_{0,he} - \hat{x}_{0,he})^2
        + \lambda_0\, \mathrm{mean}_h\, \mathrm{mean}_k
        \left(\big(\textstyle\sum_{i < I} \hat{x}_{0,hi}
        (\mathbf{R}^\top \mathbf{E}_u)_i\big)_k - (\mathbf{E}_e)_{hk}
        \right)^2,

    the sums over all entities (items :math:`i < I` for the collaborative
    knowledge-graph convolution, CKGC) estimated from the support with its
    importance weights (exact when the support holds every entity).

    Args:
        denoiser (SparseDenoiser): The denoiser.
        diffusion (GaussianDiffusion): The schedule.
        support (Support): The batch's support.
        t (torch.Tensor): Step of every head :obj:`[batch_size]`.
        item_user_emb (torch.Tensor): :math:`\mathbf{R}^\top \mathbf{E}_u`,
            shape :obj:`[num_items, d]` (detached).
        head_emb (torch.Tensor): :math:`\mathbf{E}_e` of the heads,
            shape :obj:`[batch_size, d]` (detached).
        ckgc_weight (float, optional): :math:`\lambda_0`. (default: :obj:`0.5`)
        noise (torch.Tensor, optional): Standard normal noise per support
            entry (sampled when not given).

    Returns:
        The objective, the diffusion term and the CKGC term.
    """
    row = rows_of(support.ptr, support.index.numel())
    batch_size = t.numel()
    if noise is None:
        noise = torch.randn_like(support.target)
    x_t = diffusion.q_sample(support.target, t[row], noise)
    x_hat = denoiser(x_t, support.ptr, support.index, t)
    error = support.weight * (support.target - x_hat).square()
    mse = scatter(error, row, 0, dim_size=batch_size) / denoiser.num_entities
    diff = (diffusion.loss_weight[t].float() * mse).mean()

    is_item = support.index < item_user_emb.size(0)
    contribution = ((support.weight * x_hat)[is_item, None] *
                    item_user_emb[support.index[is_item]])
    z = scatter(contribution, row[is_item], 0, dim_size=batch_size)
    ckgc = (z - head_emb).square().mean(dim=-1).mean()
    return (1.0 - ckgc_weight) * diff + ckgc_weight * ckgc, diff, ckgc


def segment_top_k(score: Tensor, row: Tensor, k: int) -> Tensor:
    r"""Returns the mask of the :obj:`k` highest :obj:`score` entries of
    every group of entries sharing a :obj:`row` (ties broken by position),
    by two stable sorts, without a loop over groups.

    Args:
        score (torch.Tensor): Scores :obj:`[num_entries]`.
        row (torch.Tensor): Group of every entry :obj:`[num_entries]`.
        k (int): Entries kept per group.
    """
    order = torch.argsort(score, descending=True, stable=True)
    order = order[torch.argsort(row[order], stable=True)]
    sorted_row = row[order]
    start = torch.searchsorted(sorted_row, sorted_row, right=False)
    rank = torch.arange(row.numel(), device=row.device) - start
    mask = torch.zeros_like(row, dtype=torch.bool)
    mask[order] = rank < k
    return mask


@torch.no_grad()
def rebuild_kg(denoiser: SparseDenoiser, diffusion: GaussianDiffusion,
               edge_index: Tensor, edge_type: Tensor, num_entities: int,
               rebuild_k: int = 1, keep_rate: float = 0.5,
               sampling_steps: int = 0, batch_size: int = 1024,
               generator: Optional[torch.Generator] = None
               ) -> Tuple[Tensor, Tensor]:
    r"""Rebuilds the denoised knowledge graph.

    Every head's row starts from :math:`\mathbf{x}_0` (or from
    :math:`q(\mathbf{x}_s | \mathbf{x}_0)` with :math:`s =`
    :obj:`sampling_steps - 1` when :obj:`sampling_steps > 0`) and goes
    through the deterministic reverse process :math:`\mathbf{x} \leftarrow
    c_{1,i}\,\mathrm{denoiser}(\mathbf{x}, i) + c_{2,i}\,\mathbf{x}` for
    :math:`i = T-1, \dots, 0`; the :obj:`rebuild_k` best-scored edges of
    every head are kept, the reverse of every kept pair is added (once),
    every pair carries its relation from the input KG, and finally every
    edge is kept with probability :obj:`keep_rate`.

    Only the entries of a head's existing edges are carried through the
    reverse process (they are the only candidates kept); the published code
    carries all :math:`N` entries of the row, whose non-edge values enter
    the next step's input normalisation. At the first step, started from
    :math:`\mathbf{x}_0`, both agree exactly.

    Args:
        denoiser (SparseDenoiser): The trained denoiser.
        diffusion (GaussianDiffusion): The schedule.
        edge_index (torch.Tensor): The KG's ordered pairs, sorted by head
            then tail, with every reverse pair present,
            shape :obj:`[2, num_edges]`.
        edge_type (torch.Tensor): Their relations :obj:`[num_edges]`.
        num_entities (int): :math:`N`.
        rebuild_k (int, optional): Edges kept per head. (default: :obj:`1`)
        keep_rate (float, optional): Final keep probability, in
            :obj:`(0, 1]`. (default: :obj:`0.5`)
        sampling_steps (int, optional): Noise the start to this step first
            (:obj:`0`: start from :math:`\mathbf{x}_0`).
            (default: :obj:`0`)
        batch_size (int, optional): Heads denoised at once.
            (default: :obj:`1024`)
        generator (torch.Generator, optional): For the keep mask (and the
            start noise).

    Returns:
        The denoised :obj:`(edge_index, edge_type)`, sorted by head.
    """
    if rebuild_k < 1:
        raise ValueError(f"'rebuild_k' must be >= 1 (got {rebuild_k})")
    if not 0.0 < keep_rate <= 1.0:
        raise ValueError(f"'keep_rate' must lie in (0, 1] (got {keep_rate})")
    if not 0 <= sampling_steps <= diffusion.steps:
        raise ValueError(f"'sampling_steps' must lie in [0, "
                         f"{diffusion.steps}] (got {sampling_steps})")
    was_training = denoiser.training
    denoiser.eval()
    head, tail = edge_index
    device = head.device
    heads, degree = torch.unique_consecutive(head, return_counts=True)
    edge_ptr = cumsum(degree)
    score = torch.empty(head.numel(), device=device)
    for start in range(0, heads.numel(), batch_size):
        end = min(start + batch_size, heads.numel())
        lo, hi = int(edge_ptr[start]), int(edge_ptr[end])
        ptr = edge_ptr[start:end + 1] - lo
        x = torch.ones(hi - lo, device=device)
        if sampling_steps > 0:
            step = torch.full_like(tail[lo:hi], sampling_steps - 1)
            noise = torch.randn(hi - lo, generator=generator, device=device)
            x = diffusion.q_sample(x, step, noise)
        for i in reversed(range(diffusion.steps)):
            t = torch.full((end - start, ), i, dtype=torch.long,
                           device=device)
            x_hat = denoiser(x, ptr, tail[lo:hi], t)
            x = diffusion.posterior_mean(x_hat, x, t[:1].expand_as(x))
        score[lo:hi] = x
    denoiser.train(was_training)

    keep = segment_top_k(score, head, rebuild_k)
    kept = edge_index[:, keep]
    pairs = torch.cat([kept, kept.flip(0)], dim=1)
    key = torch.unique(pairs[0] * num_entities + pairs[1])
    all_key = head * num_entities + tail
    position = torch.searchsorted(all_key, key).clamp(max=head.numel() - 1)
    if not bool((all_key[position] == key).all()):
        raise ValueError("'edge_index' must hold the reverse of every pair "
                         "(add inverse relations) and be sorted by head")
    out_index = torch.stack([key // num_entities, key % num_entities])
    out_type = edge_type[position]
    mask = torch.rand(key.numel(), generator=generator,
                      device=device) < keep_rate
    return out_index[:, mask], out_type[mask]
