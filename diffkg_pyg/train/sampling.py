r"""Negative sampling for BPR training."""
from typing import Callable, Optional

import torch
from torch import Tensor

__all__ = ['interaction_keys', 'sample_negative_items', 'sample_row_entries']


def sample_row_entries(ptr: Tensor, rows: Tensor,
                       generator: Optional[torch.Generator] = None) -> Tensor:
    r"""For every row of :obj:`rows` (each with at least one entry), the
    position of one of its entries in a CSR-grouped array of row pointer
    :obj:`ptr` (see :func:`~diffkg_pyg.csr.to_csr`), drawn uniformly."""
    count = ptr[rows + 1] - ptr[rows]
    return ptr[rows] + (torch.rand(rows.shape, generator=generator,
                                   device=rows.device) * count).long()


def interaction_keys(edge_index: Tensor, num_items: int) -> Tensor:
    r"""The sorted keys :math:`u \cdot I + i` of the pairs :obj:`edge_index`
    :obj:`[2, num_pairs]`, as :func:`sample_negative_items` looks them up
    (build them once when sampling for many batches of a fixed set)."""
    return torch.sort(edge_index[0] * num_items + edge_index[1]).values


def sample_negative_items(user: Tensor, train_edge_index: Tensor,
                          num_items: int,
                          generator: Optional[torch.Generator] = None,
                          max_rounds: int = 100,
                          draw: Optional[Callable[[int], Tensor]] = None,
                          keys: Optional[Tensor] = None) -> Tensor:
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
        draw (callable, optional): Draws :obj:`n` candidate items from
            another law than the uniform one (rejection still skips the
            user's own). (default: :obj:`None`: uniform)
        keys (torch.Tensor, optional): :func:`interaction_keys` of
            :obj:`train_edge_index`, when already built (otherwise they are
            built, a sort of the train pairs). (default: :obj:`None`)
    """
    known = interaction_keys(train_edge_index, num_items) if keys is None \
        else keys
    if draw is None:
        def draw(n: int) -> Tensor:
            return torch.randint(num_items, (n, ), generator=generator,
                                 device=user.device)
    item = draw(user.numel())
    for _ in range(max_rounds):
        key = user * num_items + item
        position = torch.searchsorted(known, key).clamp(max=known.numel() - 1)
        redo = torch.nonzero(known[position] == key).view(-1)
        if redo.numel() == 0:
            return item
        item[redo] = draw(redo.numel())
    raise ValueError(f'could not sample negative items in {max_rounds} '
                     f'rounds: some users interacted with (almost) every item')
