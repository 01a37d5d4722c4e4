r"""Data-parallel training with :mod:`torch.distributed`: the process group
from the environment :obj:`torchrun` sets, the sharding of a global batch
and the exact sum of its gradients over the ranks.

The scheme (see the docs' guide "Several processes"): every rank holds the
whole graph and the whole model and draws the same random numbers (one seed
for all), so every rank computes the same epoch permutation, the same
negative items and the same dropout masks as a one-process run. A step that
a recipe shards (:meth:`TrainContext.shard
<diffkg_pyg.train.TrainContext.shard>`) gives rank :math:`r` the contiguous
part :math:`B_r` of the global batch :math:`B`; its loss :math:`L_r`, the
model's loss of :math:`B_r` as a batch, is weighted by :math:`|B_r| / |B|`
and the gradients are summed over the ranks:

.. math::
    \sum_r \frac{|B_r|}{|B|} \nabla L_r = \nabla L_B

for every loss that is a mean over the batch plus terms that do not depend
on it (the L2 of a whole table), which is the one-process step's gradient
up to the order of the floating-point sums. A step that is not sharded runs
in full on every rank (the same draws, the same gradient): nothing is
reduced. Parameters stay identical on every rank because every rank applies
the same reduced gradient.
"""
import datetime
import os
from typing import Iterable, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ['launched_world_size', 'init_from_env', 'is_distributed',
           'get_rank', 'get_world_size', 'shard', 'all_reduce_gradients',
           'all_reduce_sum', 'broadcast_module', 'broadcast_tensors',
           'all_gather_objects']


def is_distributed() -> bool:
    r"""Whether a process group of more than one process is initialised."""
    return (dist.is_available() and dist.is_initialized()
            and dist.get_world_size() > 1)


def get_rank() -> int:
    r"""This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    r"""The number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def launched_world_size() -> int:
    r"""The number of processes :obj:`torchrun` started (its
    :obj:`WORLD_SIZE`; 1 outside it), before any process group exists."""
    return int(os.environ.get('WORLD_SIZE', '1'))


def init_from_env(device: torch.device,
                  timeout: float = 1800.0) -> torch.device:
    r"""Initialises the default process group from the environment of
    :obj:`torchrun` (:obj:`WORLD_SIZE`, :obj:`RANK`, :obj:`LOCAL_RANK`,
    :obj:`MASTER_ADDR`, :obj:`MASTER_PORT`) when :obj:`WORLD_SIZE` is above
    1, with the backend that follows the device (NCCL on CUDA, gloo on the
    CPU); returns the device of this rank: :obj:`cuda:LOCAL_RANK` for a
    CUDA device (another index raises :class:`ValueError`: the ranks would
    share one GPU).

    Args:
        device (torch.device): The device asked for.
        timeout (float, optional): Seconds a collective waits for the other
            ranks before it fails (a rank that died does not hang the
            others forever). (default: :obj:`1800.0`)
    """
    if launched_world_size() <= 1 or dist.is_initialized():
        return device
    if device.type == 'cuda':
        local_rank = int(os.environ.get('LOCAL_RANK', '0'))
        if device.index is not None and device.index != local_rank:
            # Otherwise every rank would share that one GPU.
            raise ValueError(
                f'under torchrun every process uses its own GPU, '
                f'cuda:LOCAL_RANK (this one cuda:{local_rank}), not '
                f'{device}; pass --device cuda without an index (choose '
                f'the GPUs with CUDA_VISIBLE_DEVICES)')
        device = torch.device('cuda', local_rank)
        torch.cuda.set_device(device)
    backend = 'nccl' if device.type == 'cuda' else 'gloo'
    dist.init_process_group(backend, timeout=datetime.timedelta(
        seconds=timeout))
    return device


def shard(index: Tensor) -> Tuple[Tensor, float]:
    r"""This rank's contiguous part of the global batch :obj:`index` (the
    parts of the ranks differ in size by at most one) and its share
    :math:`|B_r| / |B|` of the batch."""
    world_size = get_world_size()
    if world_size == 1:
        return index, 1.0
    part = torch.tensor_split(index, world_size)[get_rank()]
    return part, part.numel() / max(index.numel(), 1)


def all_reduce_sum(tensor: Tensor) -> Tensor:
    r"""Sums :obj:`tensor` over the ranks, in place (every rank receives the
    same values). Under NCCL, which reduces CUDA tensors only, a CPU tensor
    (e.g. the metric sums of a rank that had no user to evaluate) is
    reduced through a copy on this rank's GPU."""
    if is_distributed():
        if dist.get_backend() == 'nccl' and tensor.device.type != 'cuda':
            moved = tensor.to(torch.device('cuda',
                                           torch.cuda.current_device()))
            dist.all_reduce(moved, op=dist.ReduceOp.SUM)
            tensor.copy_(moved)
        else:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def _all_gather_sizes(size: int, device: torch.device) -> List[int]:
    local = torch.tensor([size], dtype=torch.long, device=device)
    sizes = [torch.empty_like(local) for _ in range(get_world_size())]
    dist.all_gather(sizes, local)
    return [int(s) for s in torch.cat(sizes).tolist()]


def _all_gather_rows(tensor: Tensor, sizes: List[int]) -> Tensor:
    # all_gather needs one shape: pad every rank's rows to the largest (at
    # least one row: NCCL is not given empty buffers).
    padded = tensor.new_zeros((max(max(sizes), 1), *tensor.shape[1:]))
    padded[:tensor.size(0)] = tensor
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])


def _all_reduce_sparse(grad: Tensor) -> Tensor:
    # The touched rows and their gradients of every rank, concatenated in
    # rank order (the same on every rank): as a sparse tensor with
    # repeated rows, the sum of the ranks' gradients. SparseRowAdam sums
    # repeated rows; coalesce() would too.
    indices, values = grad._indices(), grad._values()
    sizes = _all_gather_sizes(values.size(0), values.device)
    indices = _all_gather_rows(indices.t().contiguous(), sizes).t()
    values = _all_gather_rows(values, sizes)
    return torch.sparse_coo_tensor(indices, values, grad.shape)


def all_reduce_gradients(parameters: Iterable[Tensor]) -> None:
    r"""Replaces the gradient of every parameter by its sum over the ranks:
    the dense gradients in one flattened all-reduce, the sparse (row)
    gradients by gathering every rank's touched rows and their values (see
    :func:`_all_reduce_sparse`). The ranks first agree on each parameter's
    kind (one small all-reduce): a parameter without a gradient on one rank
    counts as zeros there, and one without a gradient on every rank stays
    without, as in one process. Every rank must pass the same parameters in
    the same order."""
    if not is_distributed():
        return
    params = [p for p in parameters if p.requires_grad]
    if not params:
        return
    device = params[0].device
    # 0: no gradient, 1: dense, 2: sparse; the largest over the ranks.
    kinds = torch.tensor([0 if p.grad is None else 2 if p.grad.is_sparse
                          else 1 for p in params], device=device)
    dist.all_reduce(kinds, op=dist.ReduceOp.MAX)
    kinds = kinds.tolist()
    dense = [p for p, kind in zip(params, kinds) if kind == 1]
    if dense:
        flat = torch.cat([torch.zeros_like(p).view(-1) if p.grad is None
                          else p.grad.reshape(-1) for p in dense])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for param in dense:
            part = flat[offset:offset + param.numel()].view_as(param)
            offset += param.numel()
            if param.grad is not None:
                param.grad.copy_(part)
            else:
                param.grad = part.clone()
    for param, kind in zip(params, kinds):
        if kind == 2:
            grad = param.grad
            if grad is None:  # Touched no row here.
                grad = torch.sparse_coo_tensor(
                    torch.empty((1, 0), dtype=torch.long, device=device),
                    param.new_empty((0, *param.shape[1:])), param.shape)
            elif not grad.is_sparse:  # Dense here, rows elsewhere.
                grad = grad.to_sparse(1)
            param.grad = _all_reduce_sparse(grad)


def broadcast_module(module: torch.nn.Module) -> None:
    r"""Copies rank 0's parameters and buffers to every rank."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def broadcast_tensors(tensors: Sequence[Tensor]) -> Tuple[Tensor, ...]:
    r"""Rank 0's :obj:`tensors` (of any sizes) on every rank, each on the
    device this rank's copy was on (the input, without a process group)."""
    if not is_distributed():
        return tuple(tensors)
    holder = [[t.detach().cpu() for t in tensors] if get_rank() == 0
              else None]
    dist.broadcast_object_list(holder, src=0)
    return tuple(t.to(mine.device) for t, mine in zip(holder[0], tensors))


def all_gather_objects(obj) -> List:
    r"""Every rank's :obj:`obj` (picklable), in rank order (a list of one
    without a process group)."""
    if not is_distributed():
        return [obj]
    out: List[Optional[object]] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out
