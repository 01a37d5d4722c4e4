r"""Edge-level knowledge-graph diffusion: support sampling, the denoiser
objective (diffusion + CKGC) and the rebuild of the denoised KG, all
vectorised (no loop over heads or edges).

What is exact and what is estimated, against the dense method (rows of
length :math:`N`):

* the denoiser's **input** carries the noise of all :math:`N` entries of a
  row (drawn in column chunks, never a :obj:`[batch_size, N]` array at
  once) and its norm counts them: the hidden state equals the dense
  network's for the same noise and dropout draw;
* the **CKGC** term is exact: the output layer is linear, so
  :math:`\hat{\mathbf{x}}_{0,:I}^\top \mathbf{A} = \mathbf{h}^\top
  (\mathbf{W}_{2,:I}^\top \mathbf{A}) + \mathbf{b}_{2,:I}^\top \mathbf{A}`;
* the **rebuild**'s reverse process is exact: every row stays of the form
  :math:`\alpha \mathbf{x}_0 + \gamma \boldsymbol{\epsilon} + \mathbf{W}_2
  \mathbf{g} + \beta \mathbf{b}_2`, whose input-layer product and norm need
  only :math:`H \times H` matrices;
* the **diffusion loss**'s sum over the :math:`N` entries of a row is
  estimated from the support (the row's edges plus sampled non-edges,
  Horvitz-Thompson weighted): unbiased for the given hidden state;
* the input layer's **gradient** is the dense network's: the columns
  outside the support get the gradient of the noise they carried (replayed
  in the backward, never held as a :obj:`[batch_size, N]` array), the
  sampled columns' pathwise gradient when that noise is estimated (its
  expectation is the exact path's as far as the estimate's law is the
  dense law's: the same mean and covariance, not higher moments; tested
  by Monte Carlo, and measured against the exact path at the full N of
  Alibaba-iFashion and Last-FM in BENCHMARKS.md, section 1b). With
  :obj:`noise_gradient=False` only the support's columns move (the
  package before that option).
"""
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.utils import cumsum, scatter
from torch_geometric.utils import degree as node_degree

from diffkg_pyg.csr import gather_rows, rows_of
from diffkg_pyg.nn.denoiser import SparseDenoiser
from diffkg_pyg.nn.diffusion import GaussianDiffusion
from diffkg_pyg.nn.kg_noise import full_noise, noise_sums

__all__ = ['Support', 'sample_support', 'denoise_support',
           'denoiser_loss', 'segment_top_k', 'rebuild_kg', 'rebuild_scores',
           'select_edges']

#: Entries of a noise chunk (rows x columns) drawn at once.
CHUNK_ENTRIES = 1 << 22

class Support(NamedTuple):
    r"""Support entries of a batch of heads, grouped by head, each entity at
    most once per head.

    Attributes:
        ptr: Row pointer :obj:`[batch_size + 1]`.
        index: Entity of every entry :obj:`[num_support]`.
        target: :math:`\mathbf{x}_0` at the entry (1 for a KG edge, 0 for a
            sampled non-edge).
        weight: Importance weight of the entry: 1 for edges, the inverse of
            its inclusion probability :math:`1 / (1 - (1 - 1/F_h)^{k_h})`
            for a non-edge (:math:`k_h` draws with replacement among the
            :math:`F_h` non-edges of head :math:`h`), so that weighted sums
            over the support are unbiased estimates of sums over all
            :math:`N` entities (Horvitz-Thompson).
    """
    ptr: Tensor
    index: Tensor
    target: Tensor
    weight: Tensor


def sample_support(kg_ptr: Tensor, kg_col: Tensor, heads: Tensor,
                   num_entities: int, num_negatives: int = 1,
                   generator: Optional[torch.Generator] = None) -> Support:
    r"""Builds the support of :obj:`heads`: their KG edges plus the distinct
    non-edges among :math:`k_h = \min(m\,d_h, F_h)` draws per head, uniform
    with replacement among the head's :math:`F_h = N - d_h` non-edges
    (without rejection), weighted as in :class:`Support`.

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
    num_draws = torch.minimum(degree * num_negatives, num_free)
    neg_row = torch.repeat_interleave(
        torch.arange(heads.numel(), device=device), num_draws)
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
    # Distinct draws only (sorted by head, then entity):
    key = torch.unique(neg_row * (num_entities + 1) + rank + below)
    neg_row, neg_col = key // (num_entities + 1), key % (num_entities + 1)
    free, draws = num_free.double(), num_draws.double()
    inclusion = -torch.expm1(draws * torch.log1p(-1.0 / free.clamp(min=1)))
    weight = (1.0 / inclusion.clamp(min=1e-12)).float()[neg_row]

    row = torch.cat([edge_row, neg_row])
    perm = torch.argsort(row, stable=True)
    # (PyG's scatter count, not bincount: no host sync on a GPU.)
    count = degree + node_degree(neg_row, heads.numel(), dtype=torch.long)
    return Support(
        ptr=cumsum(count),
        index=torch.cat([edge_col, neg_col])[perm],
        target=torch.cat([torch.ones_like(edge_col, dtype=torch.float),
                          torch.zeros_like(neg_col, dtype=torch.float)])[perm],
        weight=torch.cat([torch.ones_like(edge_col, dtype=torch.float),
                          weight])[perm],
    )


def denoise_support(denoiser: SparseDenoiser, diffusion: GaussianDiffusion,
                    support: Support, t: Tensor,
                    noise: Optional[Tensor] = None,
                    mask: Optional[Tensor] = None,
                    generator: Optional[torch.Generator] = None,
                    num_columns: Optional[int] = None,
                    noise_gradient: bool = True
                    ) -> Tuple[Tensor, Tensor]:
    r"""The denoiser on the noised rows :math:`\mathbf{x}_{t_h} =
    \sqrt{\bar\alpha_t} \mathbf{x}_0 + \sqrt{1 - \bar\alpha_t}
    \boldsymbol{\epsilon}` of a batch of heads, the noise (and, in
    training, the dropout) on all :math:`N` entities: returns the hidden
    states :obj:`[batch_size, hidden_channels]` and
    :math:`\hat{\mathbf{x}}_0` on the support :obj:`[num_support]`, both
    equal to the dense network's for the same draws (see
    :func:`denoiser_loss` for the arguments)."""
    row = rows_of(support.ptr, support.index.numel())
    acp = diffusion.alphas_cumprod[t]
    a, b = acp.sqrt().float(), (1.0 - acp).sqrt().float()
    keep = 1.0 - denoiser.dropout if denoiser.training else 1.0
    eps, keep_mask, outside = full_noise(
        denoiser.input_emb.weight, support.ptr, support.index, b, keep,
        noise, mask, generator, num_columns, noise_gradient)
    x_t = a[row] * support.target + b[row] * eps
    hidden = denoiser.hidden(x_t, support.ptr, support.index, t, outside,
                             keep_mask)
    return hidden, denoiser.output(hidden, support.ptr, support.index)


def denoiser_loss(denoiser: SparseDenoiser, diffusion: GaussianDiffusion,
                  support: Support, t: Tensor, item_user_emb: Tensor,
                  head_emb: Tensor, ckgc_weight: float = 0.5,
                  noise: Optional[Tensor] = None,
                  mask: Optional[Tensor] = None,
                  generator: Optional[torch.Generator] = None,
                  num_columns: Optional[int] = None,
                  noise_gradient: bool = True
                  ) -> Tuple[Tensor, Tensor, Tensor]:
    r"""The denoiser objective of DiffKG on a batch of heads,

    .. math::
        (1 - \lambda_0)\, \mathrm{mean}_h\, w_{t_h}
        \frac{1}{N}\sum_{e} (x_{0,he} - \hat{x}_{0,he})^2
        + \lambda_0\, \mathrm{mean}_h\, \mathrm{mean}_k
        \left(\big(\textstyle\sum_{i < I} \hat{x}_{0,hi}
        (\mathbf{R}^\top \mathbf{E}_u)_i\big)_k - (\mathbf{E}_e)_{hk}
        \right)^2,

    with :math:`\hat{\mathbf{x}}_{0,h}` the denoiser's output for
    :math:`\mathbf{x}_{t_h} = \sqrt{\bar\alpha_t} \mathbf{x}_0 +
    \sqrt{1 - \bar\alpha_t} \boldsymbol{\epsilon}`, the noise on all
    :math:`N` entities (see :func:`full_noise`). The hidden state and the
    CKGC term (the sum over items :math:`i < I`, the collaborative
    knowledge-graph convolution) are exact; the sum over the :math:`N`
    entities of the diffusion term is estimated from the support with its
    importance weights (unbiased; exact when the support holds every
    entity).

    Args:
        denoiser (SparseDenoiser): The denoiser.
        diffusion (GaussianDiffusion): The schedule.
        support (Support): The batch's support.
        t (torch.Tensor): Step of every head :obj:`[batch_size]`.
        item_user_emb (torch.Tensor): :math:`\mathbf{R}^\top \mathbf{E}_u`,
            shape :obj:`[num_items, d]` (detached).
        head_emb (torch.Tensor): :math:`\mathbf{E}_e` of the heads,
            shape :obj:`[batch_size, d]` (detached).
        ckgc_weight (float, optional): :math:`\lambda_0`.
            (default: :obj:`0.5`)
        noise (torch.Tensor, optional): The standard normal noise of the
            rows on all entities :obj:`[batch_size, N]` (drawn in column
            chunks from :obj:`generator` when not given).
        mask (torch.Tensor, optional): The dropout keep mask
            :obj:`[batch_size, N]` in training (drawn when not given).
        generator (torch.Generator, optional): For the draws.
        num_columns (int, optional): Estimate the noise outside the support
            from this many columns when :math:`N` is larger (see
            :func:`full_noise`). (default: :obj:`None`: exact)
        noise_gradient (bool, optional): Let the input table's gradient
            reach the columns outside the support (see :func:`full_noise`).
            (default: :obj:`True`)

    Returns:
        The objective, the diffusion term and the CKGC term.
    """
    row = rows_of(support.ptr, support.index.numel())
    batch_size = t.numel()
    hidden, x_hat = denoise_support(denoiser, diffusion, support, t, noise,
                                    mask, generator, num_columns,
                                    noise_gradient)
    error = support.weight * (support.target - x_hat).square()
    mse = scatter(error, row, 0, dim_size=batch_size) / denoiser.num_entities
    diff = (diffusion.loss_weight[t].float() * mse).mean()

    items = torch.arange(item_user_emb.size(0), device=t.device)
    output_rows = denoiser.output_emb(items)  # Sparse gradient, I rows.
    output_bias = denoiser.output_bias(items).view(-1)
    z = (hidden @ (output_rows.t() @ item_user_emb) +
         output_bias @ item_user_emb)
    ckgc = (z - head_emb).square().mean(dim=-1).mean()
    return (1.0 - ckgc_weight) * diff + ckgc_weight * ckgc, diff, ckgc


class _RebuildTables:
    r"""The :math:`H \times H` tables of the exact reverse process (see
    :func:`rebuild_kg`) of a denoiser, computed once per rebuild."""
    def __init__(self, denoiser: SparseDenoiser) -> None:
        self.denoiser = denoiser
        self.w1 = denoiser.input_emb.weight.detach()  # [N, H]
        self.w2 = denoiser.output_emb.weight.detach()  # [N, H]
        self.b2 = denoiser.output_bias.weight.detach().view(-1)  # [N]
        self.m = self.w1.t() @ self.w2  # W1 W2 in the row's space.
        self.u = self.w1.t() @ self.b2  # W1 b2
        self.q = self.w2.t() @ self.w2  # W2^T W2
        self.r = self.w2.t() @ self.b2  # W2^T b2
        self.bb = self.b2 @ self.b2

    def reverse(self, diffusion: GaussianDiffusion, ptr: Tensor,
                tail: Tensor, sampling_steps: int,
                generator: Optional[torch.Generator],
                noise: Optional[Tensor]) -> Tensor:
        r"""The reverse process of a batch of heads (edges :obj:`tail`
        grouped by :obj:`ptr`); returns the final value at every edge.

        The terms that are zero are skipped, not computed: those of
        :math:`\mathbf{g}` at the first step (it starts at 0), of
        :math:`\beta` there too, and every noise term
        (:math:`\gamma = 0`) when :obj:`sampling_steps = 0`; the others are
        summed in the same order as with them."""
        batch_size = ptr.numel() - 1
        row = rows_of(ptr, tail.numel())
        offsets = ptr[:-1]
        p0 = F.embedding_bag(tail, self.w1, offsets, mode='sum')
        q0 = F.embedding_bag(tail, self.w2, offsets, mode='sum')
        s0 = scatter(self.b2[tail], row, 0, dim_size=batch_size)
        d = (ptr[1:] - ptr[:-1]).float()
        ones = torch.ones(batch_size, device=tail.device)
        alpha, beta, gamma = ones, 0.0 * ones, 0.0 * ones
        g = None  # g = 0 until the first step has run.
        noisy = sampling_steps > 0
        eps_edge = None
        if noisy:
            acp = diffusion.alphas_cumprod[sampling_steps - 1]
            alpha = alpha * float(acp.sqrt())
            gamma = ones * float((1.0 - acp).sqrt())
            eps_edge, _, (pe, qe, eb), ee = noise_sums(
                [self.w1, self.w2, self.b2[:, None]], ptr, tail, 1.0, noise,
                None, generator)
            eb = eb.view(-1)
            e0 = scatter(eps_edge, row, 0, dim_size=batch_size)
        denoiser = self.denoiser
        for i in reversed(range(diffusion.steps)):
            t = torch.full((batch_size, ), i, dtype=torch.long,
                           device=tail.device)
            first = g is None  # (Then beta = 0 too.)
            product = alpha[:, None] * p0
            if not first:
                product = (product + g @ self.m.t() +
                           beta[:, None] * self.u)
            if noisy:
                product = product + gamma[:, None] * pe
            if denoiser.norm:
                square = alpha.square() * d
                if not first:
                    square = (square + ((g @ self.q) * g).sum(-1) +
                              beta.square() * self.bb)
                if noisy:
                    square = square + gamma.square() * ee
                if not first:
                    square = (square + 2 * alpha * (q0 * g).sum(-1) +
                              2 * alpha * beta * s0)
                if noisy:
                    square = square + 2 * alpha * gamma * e0
                if not first:
                    square = square + 2 * beta * (g @ self.r)
                if noisy and not first:
                    square = (square + 2 * gamma * (qe * g).sum(-1) +
                              2 * beta * gamma * eb)
                product = product / square.clamp(min=1e-24).sqrt()[:, None]
            hidden = torch.tanh(product + denoiser.time_input(t))
            c1 = float(diffusion.posterior_mean_coef1[i])
            c2 = float(diffusion.posterior_mean_coef2[i])
            alpha, beta, gamma = c2 * alpha, c1 + c2 * beta, c2 * gamma
            g = c1 * hidden if first else c1 * hidden + c2 * g
        out = alpha[row] + (self.w2.index_select(0, tail) *
                            g.index_select(0, row)).sum(-1) + \
            beta[row] * self.b2[tail]
        return out + gamma[row] * eps_edge if noisy else out


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
               generator: Optional[torch.Generator] = None,
               noise: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    r"""Rebuilds the denoised knowledge graph.

    Every head's row starts from :math:`\mathbf{x}_0` (or from
    :math:`q(\mathbf{x}_s | \mathbf{x}_0)` with :math:`s =`
    :obj:`sampling_steps - 1` when :obj:`sampling_steps > 0`, the noise on
    all :math:`N` entities) and goes through the deterministic reverse
    process :math:`\mathbf{x} \leftarrow c_{1,i}\,\mathrm{denoiser}
    (\mathbf{x}, i) + c_{2,i}\,\mathbf{x}` for :math:`i = T-1, \dots, 0`
    on all :math:`N` entries, as the dense method does, exactly: the row
    stays :math:`\alpha \mathbf{x}_0 + \gamma \boldsymbol{\epsilon} +
    \mathbf{W}_2 \mathbf{g} + \beta \mathbf{b}_2`, so its input-layer
    product needs :math:`\mathbf{W}_1 \mathbf{W}_2` and its norm
    :math:`\mathbf{W}_2^\top \mathbf{W}_2` (both :math:`H \times H`,
    computed once). The :obj:`rebuild_k` best-scored edges of every head
    are kept (a head with at most :obj:`rebuild_k` edges keeps them all, so
    only heads with more go through the reverse process; with
    :obj:`sampling_steps > 0` only their start noise is drawn), the
    reverse of every kept pair is added (once), every pair
    carries its relation from the input KG, and finally every edge is kept
    with probability :obj:`keep_rate`.

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
        noise (torch.Tensor, optional): The start noise of every head with
            edges, in order, on all entities :obj:`[num_heads, N]` (drawn
            in column chunks when not given).

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
    # A head with at most `rebuild_k` edges keeps all of them whatever
    # their scores, so only the other heads go through the reverse process
    # (the same selection; most heads of a sparse KG have few edges).
    _, degree = torch.unique_consecutive(edge_index[0], return_counts=True)
    ranked = degree > rebuild_k
    scored = ranked.repeat_interleave(degree)
    score = torch.zeros(edge_index.size(1), device=edge_index.device)
    score[scored] = rebuild_scores(denoiser, diffusion,
                                   edge_index[:, scored], sampling_steps,
                                   batch_size, generator,
                                   None if noise is None else noise[ranked])
    return select_edges(score, edge_index, edge_type, num_entities,
                        rebuild_k, keep_rate, generator)


@torch.no_grad()
def rebuild_scores(denoiser: SparseDenoiser, diffusion: GaussianDiffusion,
                   edge_index: Tensor, sampling_steps: int = 0,
                   batch_size: int = 1024,
                   generator: Optional[torch.Generator] = None,
                   noise: Optional[Tensor] = None) -> Tensor:
    r"""The final value of the exact reverse process (see
    :func:`rebuild_kg`) at every edge of :obj:`edge_index` (sorted by
    head), shape :obj:`[num_edges]`."""
    head, tail = edge_index
    heads, degree = torch.unique_consecutive(head, return_counts=True)
    edge_ptr = cumsum(degree)
    score = torch.empty(head.numel(), device=head.device)
    tables = _RebuildTables(denoiser)
    for start in range(0, heads.numel(), batch_size):
        end = min(start + batch_size, heads.numel())
        lo, hi = int(edge_ptr[start]), int(edge_ptr[end])
        score[lo:hi] = tables.reverse(
            diffusion, edge_ptr[start:end + 1] - lo, tail[lo:hi],
            sampling_steps, generator,
            None if noise is None else noise[start:end])

    return score


def select_edges(score: Tensor, edge_index: Tensor, edge_type: Tensor,
                 num_entities: int, rebuild_k: int = 1,
                 keep_rate: float = 0.5,
                 generator: Optional[torch.Generator] = None
                 ) -> Tuple[Tensor, Tensor]:
    r"""The rebuild's selection (see :func:`rebuild_kg`) from the
    :obj:`score` of every edge: the :obj:`rebuild_k` best edges of every
    head, their reverses, their relations, each kept with probability
    :obj:`keep_rate`."""
    head, tail = edge_index
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
                      device=head.device) < keep_rate
    return out_index[:, mask], out_type[mask]
