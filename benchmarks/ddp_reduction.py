r"""The package's hand-written gradient reduction beside PyTorch's
:class:`~torch.nn.parallel.DistributedDataParallel`, on the steps of a
model whose gradients DDP can carry (LightGCN: dense gradients only, one
loss per step), side by side in one run under ``torchrun``.

Every rank takes its part of the same global batch (the package's
:func:`~diffkg_pyg.distributed.shard`). The hand-written step weights the
part's loss by its share :math:`|B_r| / |B|`, runs the backward, then
:func:`~diffkg_pyg.distributed.all_reduce_gradients` (one flattened
all-reduce after the backward). The DDP step runs the same loss through a
DDP-wrapped module whose :meth:`forward` computes it, scaled by
:math:`P |B_r| / |B|` (DDP averages over the :math:`P` ranks), so its
all-reduce is bucketed and overlapped with the backward. Both start from
the same parameters; after the first step their gradients are compared
(``max_abs_diff``), then blocks of steps of each alternate and the median
seconds per step are printed, with their ratio, as one JSON line (rank 0)::

    python benchmarks/ddp_reduction.py \
        --data ../shared/data/lastfm-hetrec2011 \
        --processes 2 --threads 1 --steps 20 \
        --output benchmarks/results/ddp-reduction.jsonl
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.distributed as dist
from common import emit
from torch_geometric.nn.models import LightGCN

from diffkg_pyg import distributed
from diffkg_pyg.data import USER_ITEM, load_dataset
from diffkg_pyg.data.graph import bipartite_adjacency


class LossModule(torch.nn.Module):
    r"""LightGCN's BPR step as a module whose :meth:`forward` is the loss
    (DDP reduces the gradients of what goes through its forward)."""
    def __init__(self, model: LightGCN, adj, num_users: int) -> None:
        super().__init__()
        self.model, self.adj, self.offset = model, adj, num_users

    def forward(self, user, pos, neg):
        out = self.model.get_embedding(self.adj)
        pos_rank = (out[user] * out[pos + self.offset]).sum(dim=-1)
        neg_rank = (out[user] * out[neg + self.offset]).sum(dim=-1)
        node_id = torch.cat([user, pos + self.offset, neg + self.offset])
        return self.model.recommendation_loss(pos_rank, neg_rank,
                                              node_id=node_id,
                                              lambda_reg=1e-4)


def worker(args):
    torch.set_num_threads(args.threads)
    distributed.init_from_env(torch.device('cpu'))
    world, rank = distributed.get_world_size(), distributed.get_rank()
    data = load_dataset(args.data, log=rank == 0)
    num_users, num_items = data['user'].num_nodes, data['item'].num_nodes
    pairs = data[USER_ITEM].edge_index
    adj = bipartite_adjacency(pairs, num_users, num_items)
    generator = torch.Generator().manual_seed(0)

    def batches():
        while True:
            order = torch.randperm(pairs.size(1), generator=generator)
            for index in order.split(args.batch_size):
                neg = torch.randint(num_items, (index.numel(), ),
                                    generator=generator)
                # This rank's contiguous part of the batch, and its share:
                part, share = distributed.shard(torch.arange(index.numel()))
                yield (pairs[0, index[part]], pairs[1, index[part]],
                       neg[part], share)

    torch.manual_seed(0)
    plain = LossModule(LightGCN(num_users + num_items, 64, 2), adj,
                       num_users)
    torch.manual_seed(0)
    wrapped = torch.nn.parallel.DistributedDataParallel(
        LossModule(LightGCN(num_users + num_items, 64, 2), adj, num_users))
    optimizers = {'hand-written': torch.optim.Adam(plain.parameters()),
                  'ddp': torch.optim.Adam(wrapped.parameters())}

    def step(kind, batch):
        user, pos, neg, share = batch
        optimizer = optimizers[kind]
        optimizer.zero_grad()
        if kind == 'hand-written':
            (plain(user, pos, neg) * share).backward()
            distributed.all_reduce_gradients(plain.parameters())
        else:
            (wrapped(user, pos, neg) * share * world).backward()
        optimizer.step()

    stream = batches()
    first = next(stream)
    step('hand-written', first)
    step('ddp', first)
    diff = max(float((a.grad - b.grad).abs().max()) for a, b in zip(
        plain.parameters(), wrapped.module.parameters()))
    seconds = {'hand-written': [], 'ddp': []}
    for block in range(args.steps // 5):
        for kind in (('hand-written', 'ddp') if block % 2 == 0 else
                     ('ddp', 'hand-written')):
            for _ in range(5):
                batch = next(stream)
                dist.barrier()
                start = time.perf_counter()
                step(kind, batch)
                seconds[kind].append(time.perf_counter() - start)
    if rank == 0:
        hand = statistics.median(seconds['hand-written'])
        ddp = statistics.median(seconds['ddp'])
        record = {'data': os.path.basename(os.path.normpath(args.data)),
                  'model': 'lightgcn', 'processes': world,
                  'threads': args.threads, 'batch_size': args.batch_size,
                  'steps': len(seconds['ddp']),
                  'hand_written_step_s': hand, 'ddp_step_s': ddp,
                  'ratio_hand_written_over_ddp': hand / ddp,
                  'max_abs_diff_first_gradients': diff}
        emit([record], args.output)
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', default='synthetic')
    parser.add_argument('--processes', type=int, default=2)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--batch-size', type=int, default=2048)
    parser.add_argument('--steps', type=int, default=20,
                        help='timed steps of each kind (blocks of 5)')
    parser.add_argument('--output', default=None)
    parser.add_argument('--worker', action='store_true',
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
               '--nproc_per_node', str(args.processes), __file__,
               '--worker', *sys.argv[1:]]
    env = {**os.environ, 'OMP_NUM_THREADS': str(args.threads)}
    subprocess.run(command, check=True, env=env)


if __name__ == '__main__':
    main()
