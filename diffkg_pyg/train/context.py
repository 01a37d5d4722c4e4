r"""What a :class:`~diffkg_pyg.train.Recipe` sees of a training run: the
device, the run's random generator and settings, the run's graph, the
batch helpers and the optimiser step; nothing of the loop, the evaluation
or the checkpoints."""
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

from diffkg_pyg.data.run_graph import RunGraph
from diffkg_pyg.train.accounting import StepAccounting
from diffkg_pyg.train.sampling import sample_negative_items

__all__ = ['TrainContext']


class TrainContext:
    r"""The narrow view of a training run that a recipe's hooks receive.

    Every random draw of a recipe goes through :attr:`generator`, so a run
    is reproducible and its checkpoints resume exactly; every optimiser
    step goes through :meth:`step`, which records the loss terms (and, with
    several processes, sums the gradients of a step sharded by
    :meth:`shard`).

    Args:
        device (torch.device): Where the model and the graph live.
        generator (torch.Generator): The run's generator (on
            :obj:`device`, seeded with :obj:`seed`).
        graph (RunGraph): The run's graph (train pairs, knowledge graph and
            what models derive from them), on :obj:`device`.
        seed (int): The run's seed.
        lr (float): The learning rate of the training settings.
        weight_decay (float): The weight decay of the training settings.
        batch_size (int): Training examples per step (the global batch).
        max_batches (int, optional): Cap on the steps of one pass (smoke
            runs). (default: :obj:`None`)
        world_size (int, optional): The number of processes.
            (default: :obj:`1`)
        show_progress (bool, optional): Whether :meth:`progress` shows bars
            (when the output is a terminal). (default: :obj:`True`)
    """
    def __init__(self, device: torch.device, generator: torch.Generator,
                 graph: RunGraph, seed: int,
                 lr: float, weight_decay: float, batch_size: int,
                 max_batches: Optional[int] = None, world_size: int = 1,
                 show_progress: bool = True) -> None:
        self.device = device
        self.generator = generator
        self.graph = graph
        #: The train pairs :obj:`[2, num_train]` (user, item).
        self.train_edge_index = graph.train_edge_index
        self.num_items = graph.num_items
        self.seed = seed
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_batches = max_batches
        self.show_progress = show_progress
        #: The optimisers of :meth:`Recipe.configure_optimizers`.
        self.optimizers: List[torch.optim.Optimizer] = []
        self.accounting = StepAccounting(batch_size, world_size)

    def batches(self, index: Tensor) -> List[Tensor]:
        r"""Splits :obj:`index` into batches of :obj:`batch_size` (at most
        :obj:`max_batches` of them)."""
        return list(torch.split(index, self.batch_size))[:self.max_batches]

    def progress(self, iterable: Iterable, desc: str) -> Iterable:
        r"""A progress bar over :obj:`iterable` (hidden when the output is
        not a terminal, and on every process but the first)."""
        return tqdm(iterable, desc=desc, leave=False,
                    disable=None if self.show_progress else True)

    def shard(self, index: Tensor) -> Tensor:
        r"""This process's part of the global batch :obj:`index` (all of it
        in one process). The next :meth:`step` weights its loss by the
        part's share of the batch and sums the gradients over the processes
        (see :mod:`~diffkg_pyg.distributed`): its loss must be a mean
        over the part plus terms that do not depend on the batch, or be
        divided by :attr:`shard_batch_size` where the model divides a sum by
        the nominal batch size."""
        return self.accounting.shard(index)

    @property
    def shard_batch_size(self) -> float:
        r"""The nominal batch size that this process's part of the current
        step stands for (:obj:`batch_size` in one process)."""
        return self.accounting.shard_batch_size

    def step(self, optimizers: Sequence[torch.optim.Optimizer],
             loss: Tensor, name: str = 'loss', **terms: Tensor) -> None:
        r"""One optimiser step on :obj:`loss` (see
        :meth:`StepAccounting.step
        <diffkg_pyg.train.accounting.StepAccounting.step>`): the epoch's
        means of :obj:`loss` (under :obj:`name`) and of :obj:`terms` are
        logged and checked for NaN and infinity."""
        self.accounting.step(optimizers, loss, name, **terms)

    def bpr_batches(self, desc: str = 'train'
                    ) -> Iterator[Tuple[Tensor, Tensor, Tensor]]:
        r"""One pass over the train interactions in random order, in
        sharded batches of :obj:`(user, positive_item, negative_item)`: one
        negative item per interaction, drawn uniformly among the user's
        non-train items (see
        :func:`~diffkg_pyg.train.sample_negative_items`)."""
        user, positive = self.train_edge_index
        negative = sample_negative_items(user, self.train_edge_index,
                                         self.num_items, self.generator)
        perm = torch.randperm(user.numel(), generator=self.generator,
                              device=self.device)
        for batch in self.progress(self.batches(perm), desc):
            batch = self.shard(batch)
            yield user[batch], positive[batch], negative[batch]

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(device={self.device}, '
                f'seed={self.seed}, lr={self.lr}, '
                f'batch_size={self.batch_size})')
