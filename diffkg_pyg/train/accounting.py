r"""Optimiser steps and the bookkeeping of their losses: one step zeroes,
back-propagates and steps, weighting a sharded step's loss by its part of
the global batch; the loss terms are summed on the device and read once
per epoch, where a NaN or infinite mean stops training."""
import math
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from diffkg_pyg import distributed
from diffkg_pyg.train.results import NonFiniteLossError

__all__ = ['StepAccounting']


class StepAccounting:
    r"""Runs optimiser steps and keeps the per-epoch means of their loss
    terms (see :meth:`step`), in one process or in a process group.

    In a group of :math:`P` processes, :meth:`shard` gives this process its
    contiguous part of a global batch and remembers the part's share of it;
    the next :meth:`step` weights its loss by that share and sums the
    gradients over the processes (:mod:`~diffkg_pyg.distributed`), so that
    the step is the one-process step.

    Args:
        batch_size (int): The nominal global batch size.
        world_size (int, optional): The number of processes.
            (default: :obj:`1`)
    """
    def __init__(self, batch_size: int, world_size: int = 1) -> None:
        self.batch_size = batch_size
        self.world_size = world_size
        self._share: Optional[float] = None
        self._sums: Dict[str, Tensor] = {}
        self._counts: Dict[str, int] = {}
        self._totals: List[str] = []

    def shard(self, index: Tensor) -> Tensor:
        r"""This process's part of the global batch :obj:`index` (all of it
        in one process); the next :meth:`step` is weighted by its share."""
        part, self._share = distributed.shard(index)
        return part

    @property
    def shard_batch_size(self) -> float:
        r"""The nominal batch size this process's part of the current step
        stands for: :obj:`batch_size` times its share of the batch
        (:obj:`batch_size` in one process)."""
        if self._share is None or self.world_size == 1:
            return self.batch_size
        return self.batch_size * self._share

    def step(self, optimizers: Sequence[torch.optim.Optimizer],
             loss: Tensor, name: str = 'loss', **terms: Tensor) -> None:
        r"""One optimiser step on :obj:`loss`: zeroes the gradients of
        :obj:`optimizers`, back-propagates and steps them, and records the
        loss (under :obj:`name`) and its detached :obj:`terms`, whose means
        over the epoch :meth:`epoch_means` returns.

        After :meth:`shard`, with several processes, the loss is weighted by
        the part's share of the batch and the gradients of the optimisers'
        parameters are summed over the processes before the optimisers
        step."""
        share, self._share = self._share, None
        sharded = share is not None and self.world_size > 1
        for optimizer in optimizers:
            optimizer.zero_grad()
        if not sharded:
            loss.backward()
        elif share > 0:
            (loss * share).backward()
        # else: an empty part (a last batch shorter than the processes):
        # no gradient (its loss, a mean over nothing, is NaN).
        if sharded:
            distributed.all_reduce_gradients(
                [p for o in optimizers for group in o.param_groups
                 for p in group['params']])
        for optimizer in optimizers:
            optimizer.step()
        if name not in self._totals:
            self._totals.append(name)
        # Summed over the processes at the end of the epoch: a sharded
        # step's terms by their share, the others (the same on every
        # process) by 1 / P.
        weight = share if sharded else 1.0 / self.world_size
        for key, value in {name: loss, **terms}.items():
            value = value.detach().float()
            if self.world_size > 1:
                value = value * weight if weight > 0 else \
                    torch.zeros_like(value)
            if key in self._sums:
                self._sums[key] = self._sums[key] + value
                self._counts[key] += 1
            else:
                self._sums[key], self._counts[key] = value, 1

    @property
    def totals(self) -> List[str]:
        r"""The names of the total losses stepped on (not their terms)."""
        return list(self._totals)

    def reset(self) -> None:
        r"""Forgets the terms recorded so far (at the start of an
        epoch)."""
        self._sums, self._counts = {}, {}

    def epoch_means(self, epoch: int) -> Dict[str, float]:
        r"""The mean of every recorded term since :meth:`reset` (summed over
        the processes), read with one host sync; raises
        :class:`~diffkg_pyg.train.NonFiniteLossError` naming the first NaN
        or infinite term (the terms before the totals: they name the
        culprit better)."""
        if not self._sums:
            return {}
        names = list(self._sums)
        means = torch.stack([self._sums[k] / self._counts[k] for k in names])
        distributed.all_reduce_sum(means)
        values = dict(zip(names, means.tolist()))
        self.reset()
        for key in sorted(names, key=lambda k: k in self._totals):
            if not math.isfinite(values[key]):
                kind = ('the training loss' if key in self._totals else
                        'the loss term')
                raise NonFiniteLossError(
                    f'{kind} {key!r} is {values[key]} in epoch {epoch}; '
                    f'training stopped (checkpoints of earlier epochs are '
                    f'kept; try a lower learning rate)')
        return values
