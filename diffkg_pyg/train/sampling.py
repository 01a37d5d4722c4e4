r"""Negative sampling for BPR training."""
from typing import Optional

import torch
from torch import Tensor

__all__ = ['sample_negative_items']


def sample_negative_items(user: Tensor, train_edge_index: Tensor,
                          num_items: int,
                          generator: Optional[torch.Generator] = None,
                          max_rounds: int = 100) -> Tensor:
    r"""Samples, for every entry of :obj:`user`, an item uniformly among the
    items that user has no train interaction with (vectorised rejection
    sampling).

    Args:
        user (torch.Tensor): Users, shape :obj:`[num_samples]`.
        train_edge_index (torch.Tensor): The train interactions,
            shape :obj:`[2, num_train]`.
        num_items (int): The number of items.
        generator (torch.Generator, optional): The random generator.
        max_rounds (int, optional): Give up after this many rejection rounds
            (reached only by users who interacted with almost every item).
            (default: :obj:`100`)
    """
    known = torch.sort(train_edge_index[0] * num_items +
                       train_edge_index[1]).values
    item = torch.randint(num_items, user.shape, generator=generator,
                         device=user.device)
    for _ in range(max_rounds):
        key = user * num_items + item
        position = torch.searchsorted(known, key).clamp(max=known.numel() - 1)
        redo = torch.nonzero(known[position] == key).view(-1)
        if redo.numel() == 0:
            return item
        item[redo] = torch.randint(num_items, redo.shape, generator=generator,
                                   device=user.device)
    raise ValueError(f'could not sample negative items in {max_rounds} '
                     f'rounds: some users interacted with (almost) every item')
