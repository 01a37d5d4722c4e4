r"""Optimisers for parameters with sparse (row) gradients."""
import math
from typing import Callable, Iterable, Optional, Tuple

import torch
from torch import Tensor

__all__ = ['SparseRowAdam', 'OptimizerGroup']


class SparseRowAdam(torch.optim.Optimizer):
    r"""The update of :class:`torch.optim.SparseAdam` in fewer kernels, for
    embedding tables whose gradients are sparse row sets (an
    :class:`~torch.nn.Embedding` or :class:`~torch.nn.EmbeddingBag` with
    :obj:`sparse=True`).

    For the rows :math:`\mathcal{R}` present in the gradient (repeated rows
    summed first), with step count :math:`t` of the parameter,

    .. math::
        \mathbf{m}_r &\leftarrow \beta_1 \mathbf{m}_r + (1 - \beta_1)
        \mathbf{g}_r, \qquad
        \mathbf{v}_r \leftarrow \beta_2 \mathbf{v}_r + (1 - \beta_2)
        \mathbf{g}_r^2,

        \mathbf{w}_r &\leftarrow \mathbf{w}_r - \eta
        \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}
        \frac{\mathbf{m}_r}{\sqrt{\mathbf{v}_r} + \epsilon},

    and every other row, with its moments, is left as it is. This is
    :class:`torch.optim.SparseAdam`'s rule; where that class works on
    sparse tensors (coalesce, two :obj:`sparse_mask` gathers, three sparse
    additions), this one sums the rows with one :obj:`index_add_`, gathers
    the two moments' rows once and writes them back with
    :obj:`index_copy_`: about 2x faster on the denoiser's tables. A dense
    gradient counts as every row present (the denoiser's input table with
    the exact noise gradient): the same update, in place on the whole
    table.

    Args:
        params (iterable): The parameters (sparse row gradients, or dense
            ones where every row has a gradient).
        lr (float, optional): The learning rate :math:`\eta`.
            (default: :obj:`1e-3`)
        betas (tuple of float, optional): :math:`(\beta_1, \beta_2)`.
            (default: :obj:`(0.9, 0.999)`)
        eps (float, optional): :math:`\epsilon`. (default: :obj:`1e-8`)
    """
    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        if lr <= 0:
            raise ValueError(f"'lr' must be > 0 (got {lr})")
        if not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"'betas' must be in [0, 1) (got {betas})")
        if eps <= 0:
            raise ValueError(f"'eps' must be > 0 (got {eps})")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Tensor]] = None
             ) -> Optional[Tensor]:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group['betas']
            for param in group['params']:
                if param.grad is None:
                    continue
                state = self.state[param]
                if len(state) == 0:
                    state['step'] = 0
                    state['exp_avg'] = torch.zeros_like(param)
                    state['exp_avg_sq'] = torch.zeros_like(param)
                state['step'] += 1  # Counted as SparseAdam counts it.
                step = state['step']
                grad = param.grad
                step_size = (group['lr'] * math.sqrt(1 - beta2**step) /
                             (1 - beta1**step))
                if not grad.is_sparse:
                    # A dense gradient moves every row (the denoiser's exact
                    # noise gradient): the same update, in place.
                    _update_rows(param, state, grad, None, beta1, beta2,
                                 group['eps'], step_size)
                    continue
                index, inverse = torch.unique(grad._indices()[0],
                                              return_inverse=True)
                if index.numel() == 0:
                    continue
                values = grad._values().view(-1, *param.shape[1:])
                row_grad = values.new_zeros(index.numel(), *param.shape[1:])
                row_grad.index_add_(0, inverse, values)
                _update_rows(param, state, row_grad, index, beta1, beta2,
                             group['eps'], step_size)
        return loss


#: Elements of the rows updated at once by :class:`SparseRowAdam` (1 MB of
#: float32 a table): the update's eight passes stay in the cache.
ROW_CHUNK_ELEMENTS = 1 << 18


def _update_rows(param: Tensor, state: dict, row_grad: Tensor,
                 index: Optional[Tensor], beta1: float, beta2: float,
                 eps: float, step_size: float) -> None:
    # Adam on the rows `index` (sorted, distinct; None: every row, in
    # place) with their summed gradients `row_grad`, a chunk of rows at a
    # time. Every row's arithmetic is that of the whole set at once (the
    # same kernels on the same values), so the chunking changes no bit.
    # Leading rows 0, 1, 2, ... of `index` (the denoiser's items, which the
    # CKGC term moves every step) are updated in place, without gathers.
    exp_avg, exp_avg_sq = state['exp_avg'], state['exp_avg_sq']
    rows = max(1, ROW_CHUNK_ELEMENTS // max(1, row_grad[0].numel()))
    total = dense = row_grad.size(0)
    if index is not None:  # The length of the run 0, 1, ..., dense - 1:
        other = index != torch.arange(total, device=index.device)
        dense = int(other.int().argmax()) if bool(other.any()) else total
    bounds = [(s, min(s + rows, dense)) for s in range(0, dense, rows)] + \
        [(s, min(s + rows, total)) for s in range(dense, total, rows)]
    for start, end in bounds:
        grad, in_place = row_grad[start:end], start < dense
        if in_place:
            avg, avg_sq = exp_avg[start:end], exp_avg_sq[start:end]
        else:
            chunk = index[start:end]
            avg = exp_avg.index_select(0, chunk)
            avg_sq = exp_avg_sq.index_select(0, chunk)
        avg.lerp_(grad, 1 - beta1)
        avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if in_place:
            update = torch.div(avg, avg_sq.sqrt().add_(eps))
            param[start:end].add_(update, alpha=-step_size)
        else:
            exp_avg.index_copy_(0, chunk, avg)
            exp_avg_sq.index_copy_(0, chunk, avg_sq)
            update = avg.div_(avg_sq.sqrt_().add_(eps))
            param.index_add_(0, chunk, update, alpha=-step_size)


class OptimizerGroup:
    r"""Several optimisers stepped as one (a model whose parameters need
    different optimisers, e.g. sparse-row and dense ones):
    :meth:`zero_grad` and :meth:`step` call every optimiser's; an
    optimiser whose parameters have no gradient in a step leaves them as
    they are (:class:`torch.optim.Adam` and
    :class:`SparseRowAdam` skip parameters without a gradient).

    Args:
        optimizers (list): The optimisers.
    """
    def __init__(self, optimizers: Iterable[torch.optim.Optimizer]) -> None:
        self.optimizers = list(optimizers)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()

    def state_dict(self) -> list:
        return [o.state_dict() for o in self.optimizers]

    def load_state_dict(self, state: list) -> None:
        for optimizer, optimizer_state in zip(self.optimizers, state):
            optimizer.load_state_dict(optimizer_state)

    def __repr__(self) -> str:
        names = ', '.join(type(o).__name__ for o in self.optimizers)
        return f'{self.__class__.__name__}([{names}])'
