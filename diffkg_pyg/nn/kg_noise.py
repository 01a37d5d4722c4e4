r"""The noise of the denoiser's rows on all :math:`N` entities, drawn in
column chunks (never a :obj:`[batch_size, N]` array at once), exactly or,
for large :math:`N`, estimated from sampled columns with the dense law's
mean and covariance; with the input table's gradient on the columns the
noise reached, as the dense network's backward gives it."""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.utils import scatter

from diffkg_pyg.csr import rows_of

__all__ = ['full_noise', 'noise_sums', 'choose_noise_columns',
           'SAMPLED_COLUMNS']

#: Entries of a noise chunk (rows x columns) drawn at once.
CHUNK_ENTRIES = 1 << 22

#: The most noise entries (rows x columns) whose masked chunks a step keeps
#: for its backward, instead of replaying their draws there (128 MB).
KEPT_NOISE_ENTRIES = 1 << 25

#: The columns of the noise estimator where the exact noise is not chosen
#: (see :func:`choose_noise_columns`).
SAMPLED_COLUMNS = 16384


def choose_noise_columns(num_entities: int, hidden_channels: int,
                         device: torch.device) -> Optional[int]:
    r"""DiffKG's :obj:`noise_columns=0`: the noise columns of the
    denoiser's steps on :obj:`device`. The estimator exists because the
    exact noise costs the dense first layer, :math:`B \times N \times H`
    multiply-adds per step and an :math:`[N, H]` gradient: on a CPU that
    dominates an epoch, so there it is :data:`SAMPLED_COLUMNS` (exact
    anyway when :math:`N` is not larger). On a CUDA GPU it is :obj:`None`,
    the exact noise, when the free memory holds four times the exact
    path's extra arrays (the :math:`[N, H]` gradient, its accumulation and
    update, and the noise chunks), else :data:`SAMPLED_COLUMNS`.

    Args:
        num_entities (int): :math:`N`.
        hidden_channels (int): :math:`H`, the denoiser's hidden size.
        device (torch.device): Where the steps run.
    """
    device = torch.device(device)
    if device.type != 'cuda' or num_entities <= SAMPLED_COLUMNS:
        return SAMPLED_COLUMNS
    free, _ = torch.cuda.mem_get_info(device)
    need = 4 * (3 * num_entities * hidden_channels + 2 * CHUNK_ENTRIES)
    return None if free >= 4 * need else SAMPLED_COLUMNS


def _noise_chunks(batch_size: int, num_entities: int, keep: float,
                  noise: Optional[Tensor], mask: Optional[Tensor],
                  generator: Optional[torch.Generator],
                  device: torch.device, fresh: bool = False):
    # Yields (start, end, noise, keep mask or None) over column chunks of
    # the rows' standard normal noise and dropout keep mask: copies of
    # `noise` / `mask` when given, drawn from `generator` otherwise, into
    # buffers reused from chunk to chunk (the caller may overwrite them;
    # with `fresh`, the noise of every chunk in a buffer of its own).
    size = min(num_entities, max(1, CHUNK_ENTRIES // max(1, batch_size)))
    buffer = torch.empty((batch_size, size), device=device)
    uniform = torch.empty((batch_size, size), device=device) \
        if keep < 1.0 and mask is None else None
    for start in range(0, num_entities, size):
        end = min(start + size, num_entities)
        if fresh and start > 0:
            buffer = torch.empty((batch_size, size), device=device)
        # (The last, narrower chunk is a view of the [B, size] buffer too:
        # its draws are those of earlier commits.)
        eps = buffer[:, :end - start]
        if noise is not None:
            eps.copy_(noise[:, start:end])
        else:
            eps.normal_(generator=generator)
        keep_mask = None
        if keep < 1.0:
            if mask is not None:
                keep_mask = mask[:, start:end].bool()
            else:
                keep_mask = uniform[:, :end - start].uniform_(
                    generator=generator) < keep
        yield start, end, eps, keep_mask


def noise_sums(weights: List[Tensor], ptr: Tensor, index: Tensor,
                keep: float, noise: Optional[Tensor], mask: Optional[Tensor],
                generator: Optional[torch.Generator],
                kept: Optional[list] = None):
    r"""Over column chunks of the rows' standard normal noise (and keep
    mask, when :obj:`keep < 1`): the noise and the mask at the support
    entries :obj:`index` (grouped by :obj:`ptr`), :math:`\sum_j \epsilon_j
    m_j / p\, \mathbf{w}_j` for every table of :obj:`weights`
    (:obj:`[N, k]` each) and :math:`\sum_j \epsilon_j^2`, all over every
    column (given :obj:`noise` / :obj:`mask` :obj:`[B, N]`, or drawn from
    :obj:`generator`). A list :obj:`kept` receives every chunk's
    :obj:`(start, end, noise x mask)`."""
    batch_size, num_entities = ptr.numel() - 1, weights[0].size(0)
    row = rows_of(ptr, index.numel())
    eps_support = torch.zeros(index.numel(), device=index.device)
    mask_support = (torch.ones(index.numel(), device=index.device)
                    if keep < 1.0 else None)
    sums = [w.new_zeros(batch_size, w.size(1)) for w in weights]
    square = weights[0].new_zeros(batch_size)
    for start, end, eps, keep_mask in _noise_chunks(
            batch_size, num_entities, keep, noise, mask, generator,
            index.device, fresh=kept is not None):
        # The support entries in this chunk, read without a boolean index
        # (whose size would need a host sync on a GPU): every entry reads
        # a clamped cell and keeps it where it lies in the chunk.
        inside = (index >= start) & (index < end)
        local = (index - start).clamp(0, end - start - 1)
        eps_support = torch.where(inside, eps[row, local], eps_support)
        square += torch.linalg.vector_norm(eps, dim=-1).square()
        if keep_mask is not None:
            mask_support = torch.where(inside, keep_mask[row, local].float(),
                                       mask_support)
            eps.mul_(keep_mask)
        if kept is not None:
            kept.append((start, end, eps))
        for total, weight in zip(sums, weights):
            total.addmm_(eps, weight[start:end], alpha=1.0 / keep)
    return eps_support, mask_support, sums, square


def _replayable(generator: Optional[torch.Generator],
                device: torch.device
                ) -> Tuple[torch.Generator, torch.Generator]:
    # The generator to draw from and a copy at its current state, from
    # which the same draws can be replayed (for the global random stream,
    # a generator seeded from it).
    if generator is None:
        seed = int(torch.randint(1 << 62, (1, )))
        generator = torch.Generator(device=device).manual_seed(seed)
    replay = torch.Generator(device=generator.device)
    replay.set_state(generator.get_state())
    return generator, replay


class _NoiseProduct(torch.autograd.Function):
    r""":math:`\mathbf{P} = \sum_j \epsilon_{:,j} m_{:,j} / p\,
    \mathbf{W}_j` (computed without gradient, in chunks, by
    :func:`noise_sums`) as a function of the table :math:`\mathbf{W}`
    :obj:`[N, H]`: its backward gives every row :math:`j` its gradient
    :math:`\sum_b (\epsilon_{bj} m_{bj} / p)\, \partial L / \partial
    \mathbf{P}_b`, as a dense table (every row has one): from the
    forward's masked noise chunks when it kept them (:obj:`kept`, at most
    :data:`KEPT_NOISE_ENTRIES` entries), else replayed chunk by chunk from
    a copy of the generator (or read from the given :obj:`noise` and
    :obj:`mask`), so that no larger :obj:`[B, N]` array is kept."""
    @staticmethod
    def forward(ctx, weight: Tensor, product: Tensor, keep: float,
                noise: Optional[Tensor], mask: Optional[Tensor],
                replay: Optional[torch.Generator],
                kept: Optional[list] = None) -> Tensor:
        ctx.keep, ctx.noise, ctx.mask, ctx.replay = keep, noise, mask, replay
        ctx.kept, ctx.shape = kept, weight.shape
        return product.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        num_entities = ctx.shape[0]
        values = grad.new_empty(ctx.shape)
        # The 1 / p on the [B, H] gradient, not on the [N, H] result:
        scaled = grad if ctx.keep == 1.0 else grad / ctx.keep
        kept, ctx.kept = ctx.kept, None  # (Freed after this backward.)
        if kept is None:
            chunks = _noise_chunks(grad.size(0), num_entities, ctx.keep,
                                   ctx.noise, ctx.mask, ctx.replay,
                                   grad.device)
            for start, end, eps, keep_mask in chunks:
                if keep_mask is not None:
                    eps.mul_(keep_mask)
                torch.mm(eps.t(), scaled, out=values[start:end])
        for start, end, eps in kept or ():
            torch.mm(eps.t(), scaled, out=values[start:end])
        # Dense: every row has a gradient, and the support's sparse row
        # gradients are added into it in place (no sparse concatenation).
        return values, grad, None, None, None, None, None


def _chi_square(dof: Tensor,
                generator: Optional[torch.Generator]) -> Tensor:
    # Exact chi-square draws, 2 Gamma(dof / 2), by Marsaglia and Tsang's
    # method (vectorised rejection; Gamma(a) = Gamma(a + 1) U^(1/a) for
    # a < 1), from `generator`.
    alpha = dof.double() / 2
    boost = alpha < 1
    d = torch.where(boost, alpha + 1, alpha) - 1.0 / 3
    c = 1.0 / (9 * d).sqrt()
    out = torch.zeros_like(d)
    todo = dof > 0
    while bool(todo.any()):
        x = torch.randn(d.shape, generator=generator, device=d.device,
                        dtype=d.dtype)
        u = torch.rand(d.shape, generator=generator, device=d.device,
                       dtype=d.dtype)
        v = (1 + c * x)**3
        ok = (v > 0) & (u.log() < 0.5 * x * x + d - d * v +
                        d * v.clamp(min=1e-300).log())
        out = torch.where(todo & ok, d * v, out)
        todo = todo & ~ok
    u = torch.rand(d.shape, generator=generator, device=d.device,
                   dtype=d.dtype)
    out = torch.where(boost, out * u.pow(1 / alpha.clamp(min=1e-12)), out)
    return (2 * out).float()


def _drawn_outside(columns: Tensor, row: Tensor, index: Tensor,
                   batch_size: int) -> Tensor:
    r"""Which of the sorted drawn :obj:`columns` lie outside each row's
    support (entries :obj:`index` of rows :obj:`row`), :obj:`[B, K]`: the
    support entries are looked up among the :math:`K` columns, one search
    per entry (not one per cell of the :math:`B \times K` grid)."""
    num_drawn = columns.numel()
    size = batch_size * num_drawn
    position = torch.searchsorted(columns, index).clamp(max=num_drawn - 1)
    hit = columns[position] == index
    # Misses write to a spare last cell, so every write is a hit's `True`
    # (no order between writes matters, and no host sync).
    inside = torch.zeros(size + 1, dtype=torch.bool, device=columns.device)
    inside[torch.where(hit, row * num_drawn + position, size)] = True
    return ~inside[:size].view(batch_size, num_drawn)


def _sampled_noise(weight: Tensor, ptr: Tensor, index: Tensor,
                   scale: Tensor, keep: float, num_columns: int,
                   generator: Optional[torch.Generator]):
    r"""The estimator of :func:`full_noise` for large :math:`N`: the noise
    of the support entries is drawn exactly; outside the support, the
    input-layer term :math:`\sum_{j \notin S_h} \mathbf{W}_{1,j}
    \epsilon_j m_j / p` is estimated from :math:`K` columns drawn without
    replacement (shared by the batch), those of row :math:`h` outside its
    support (:math:`K_h` of its :math:`F_h`) weighted by :math:`\sqrt{F_h
    / K_h}`: given :math:`K_h` they are a uniform subset, so the term has
    mean 0 and covariance :math:`\sum_{j \notin S_h} \mathbf{W}_{1,j}
    \mathbf{W}_{1,j}^\top / p`, the dense law's (its higher moments are
    not matched). The squared norm :math:`\sum_{j \notin S_h}
    \epsilon_j^2` is the drawn columns' squares plus a
    :math:`\chi^2_{F_h - K_h}` draw for the others: its exact law, and the
    dense law's covariance with the outer product of the input term.

    The drawn columns' rows of :math:`\mathbf{W}_1` get the pathwise
    gradient of the estimate (a sparse row set). By Stein's lemma the dense
    gradient of column :math:`j`, :math:`\mathbb{E}[\epsilon_j
    \mathbf{g}]`, is :math:`\mathbb{E}[\partial \mathbf{g} / \partial
    \epsilon_j]`; a column drawn with probability :math:`K_h / F_h` and
    weighted :math:`\sqrt{F_h / K_h}` in the estimate and again in its
    derivative has the same expectation, so the estimate's gradient is
    unbiased as far as its law is the dense law (exactly when :math:`K
    \geq N`; at :math:`K < N` the unmatched higher moments bias it, which
    ``tests/nn/test_kg_noise.py`` bounds by Monte Carlo)."""
    batch_size, num_entities = ptr.numel() - 1, weight.size(0)
    device = index.device
    row = rows_of(ptr, index.numel())
    eps = torch.randn(index.numel(), generator=generator, device=device)
    keep_mask = None
    if keep < 1.0:
        keep_mask = (torch.rand(index.numel(), generator=generator,
                                device=device) < keep).float()
    columns = torch.randperm(num_entities, generator=generator,
                             device=device)[:num_columns].sort().values
    outside = _drawn_outside(columns, row, index, batch_size)  # [B, K]
    draws = torch.randn(outside.shape, generator=generator, device=device)
    draws = draws * outside
    free = (num_entities - (ptr[1:] - ptr[:-1])).float()
    count = outside.sum(dim=-1).float()
    # The drawn columns' own squares plus the chi-square of the rest: the
    # exact law of the norm, and the dense law's covariance between the
    # norm and the outer product of the input term.
    square = draws.square().sum(dim=-1) + _chi_square(free - count,
                                                      generator)
    if keep < 1.0:
        draws = draws * (torch.rand(outside.shape, generator=generator,
                                    device=device) < keep) / keep
    factor = (free / count.clamp(min=1)).sqrt()
    # The drawn columns' rows as a sparse-gradient lookup: the pathwise
    # gradient of the estimate reaches them (see `full_noise`).
    product = (draws @ F.embedding(columns, weight, sparse=True)) * \
        factor[:, None]
    return eps, keep_mask, (product * scale[:, None],
                            square * scale.square())


def full_noise(weight: Tensor, ptr: Tensor, index: Tensor, scale: Tensor,
               keep: float = 1.0, noise: Optional[Tensor] = None,
               mask: Optional[Tensor] = None,
               generator: Optional[torch.Generator] = None,
               num_columns: Optional[int] = None, gradient: bool = True
               ) -> Tuple[Tensor, Optional[Tensor], Tuple[Tensor, Tensor]]:
    r"""The noise :math:`s_h \boldsymbol{\epsilon}_h` of every row
    :math:`h` over all :math:`N` entities, split into the part on the
    support and the rest, in column chunks (never a :obj:`[batch_size, N]`
    array at once).

    Args:
        weight (torch.Tensor): The input layer's entity columns
            :math:`\mathbf{W}_1^\top` :obj:`[N, hidden_channels]`. When
            it requires gradient (and :obj:`gradient`), every column gets
            the gradient of the noise it carried: exactly, as a dense
            table, from the forward's noise chunks (kept up to
            :data:`KEPT_NOISE_ENTRIES` entries, else replayed in the
            backward from a copy of the generator, or read from
            :obj:`noise` / :obj:`mask`), or, when estimated, the drawn
            columns' pathwise gradient as a sparse row set.
        ptr (torch.Tensor): Row pointer of the support :obj:`[B + 1]`.
        index (torch.Tensor): Entity of every support entry (at most once
            per row).
        scale (torch.Tensor): :math:`s_h` :obj:`[B]`.
        keep (float, optional): Dropout keep probability :math:`p` (1: no
            dropout). (default: :obj:`1.0`)
        noise (torch.Tensor, optional): The standard normal noise
            :obj:`[B, N]` (drawn in chunks when not given).
        mask (torch.Tensor, optional): The keep mask :obj:`[B, N]` (drawn
            when not given and :obj:`keep < 1`).
        generator (torch.Generator, optional): For the draws.
        num_columns (int, optional): When smaller than :math:`N` (and no
            :obj:`noise` is given), the noise outside the support is
            estimated from this many columns (see :func:`_sampled_noise`)
            instead of drawn on all of them. (default: :obj:`None`: exact)
        gradient (bool, optional): Take the gradient of :obj:`weight`
            through the noise outside the support (:obj:`False`: treat it
            as a constant). (default: :obj:`True`)

    Returns:
        :math:`\boldsymbol{\epsilon}` on the support :obj:`[num_support]`,
        the keep mask on the support (or :obj:`None`), and
        :obj:`(product, square)` outside the support:
        :math:`\sum_{j \notin S} \mathbf{W}_{1,j} s\,\epsilon_j m_j / p`
        :obj:`[B, hidden_channels]` and :math:`\sum_{j \notin S} s^2
        \epsilon_j^2` :obj:`[B]`.
    """
    if not gradient:
        weight = weight.detach()
    if num_columns is not None and num_columns < weight.size(0) and \
            noise is None:
        return _sampled_noise(weight, ptr, index, scale, keep, num_columns,
                              generator)
    replay = kept = None
    needs_grad = weight.requires_grad and torch.is_grad_enabled()
    if needs_grad and (noise is None or (keep < 1.0 and mask is None)):
        generator, replay = _replayable(generator, index.device)
    if needs_grad and (ptr.numel() - 1) * weight.size(0) <= \
            KEPT_NOISE_ENTRIES:
        kept = []  # The backward reads the chunks instead of replaying.
    eps, keep_mask, (product, ), square = noise_sums(
        [weight.detach()], ptr, index, keep, noise, mask, generator, kept)
    if needs_grad:
        product = _NoiseProduct.apply(weight, product, keep, noise, mask,
                                      replay, kept)
    # Take the support's own noise out (it enters through the support):
    dropped = eps if keep_mask is None else eps * keep_mask / keep
    product = product - F.embedding_bag(index, weight, ptr[:-1], mode='sum',
                                        per_sample_weights=dropped,
                                        sparse=True)
    row = rows_of(ptr, index.numel())
    square = square - scatter(eps.square(), row, 0,
                              dim_size=ptr.numel() - 1)
    return eps, keep_mask, (product * scale[:, None],
                            square * scale.square())
