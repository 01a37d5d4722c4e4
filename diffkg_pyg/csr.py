r"""CSR grouping of edge lists, on PyG's :mod:`torch_geometric.index`
utilities: the row pointers of a row-sorted edge list, the row of every
entry, and the entries of a batch of rows without a Python loop."""
from typing import Tuple

import torch
from torch import Tensor
from torch_geometric.index import index2ptr, ptr2index

__all__ = ['to_csr', 'rows_of', 'gather_rows']


def to_csr(edge_index: Tensor, num_rows: int) -> Tuple[Tensor, Tensor]:
    r"""Returns the row pointer :obj:`[num_rows + 1]` and the columns
    (sorted by row, stable) of :obj:`edge_index` :obj:`[2, num_edges]`."""
    row, col = edge_index
    perm = torch.argsort(row, stable=True)
    return index2ptr(row[perm], num_rows), col[perm]


def rows_of(ptr: Tensor, num_entries: int) -> Tensor:
    r"""Returns the row of every entry of a CSR-grouped array given its row
    pointer :obj:`ptr` :obj:`[num_rows + 1]` (:obj:`num_entries` is
    :obj:`ptr[-1]`, passed so that no host sync is needed)."""
    return ptr2index(ptr, output_size=num_entries)


def gather_rows(ptr: Tensor, col: Tensor,
                rows: Tensor) -> Tuple[Tensor, Tensor]:
    r"""Gathers the CSR rows :obj:`rows` :obj:`[batch_size]` without a
    Python loop.

    Returns:
        :obj:`(local_row, col)`: for every gathered entry, the position of
        its row in :obj:`rows` and its column.
    """
    start, count = ptr[rows], ptr[rows + 1] - ptr[rows]
    local_row = torch.repeat_interleave(
        torch.arange(rows.numel(), device=rows.device), count)
    offset = torch.cumsum(count, dim=0) - count
    position = (torch.arange(local_row.numel(), device=rows.device) -
                offset[local_row] + start[local_row])
    return local_row, col[position]
