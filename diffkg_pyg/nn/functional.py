r"""Functional building blocks of the package's models."""
import torch
from torch import Tensor

__all__ = ['symmetric_spmm']


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
