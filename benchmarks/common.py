r"""Helpers shared by the benchmarks: for the speed benchmarks
(``benchmarks/speed_*.py``) the KGs and dataset graphs they run on, peak
memory, and running one measured case in a fresh subprocess, so that its
peak RSS is its own; for the accuracy tables, :func:`mean_std`."""
import json
import os
import resource
import statistics
import subprocess
import sys

import torch

from diffkg_pyg.data import ITEM_USER, KG, USER_ITEM, load_dataset
from diffkg_pyg.nn.kg_diffusion import denoiser_loss, sample_support
from diffkg_pyg.nn.kg_noise import SAMPLED_COLUMNS
from diffkg_pyg.version import package_commit

HIDDEN, TIME_CHANNELS, DIM, BATCH = 1000, 10, 64, 1024


def mean_std(values, digits: int = 4) -> str:
    r"""A table cell: the mean of :obj:`values` and, for more than one, the
    sample standard deviation (:obj:`''` for none)."""
    if not values:
        return ''
    spread = f' ± {statistics.stdev(values):.{digits}f}' \
        if len(values) > 1 else ''
    return f'{statistics.mean(values):.{digits}f}{spread}'


KGS = {  # name: (dataset folder, number of entities kept or None for all)
    'lastfm-hetrec2011': ('lastfm-hetrec2011', None),
    'alibaba-20k': ('alibaba-ifashion', 20000),
    'alibaba-40k': ('alibaba-ifashion', 40000),
    'alibaba-ifashion': ('alibaba-ifashion', None),
    'last-fm': ('last-fm', None),
}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def current_rss_gb() -> float:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**30


def load_kg(data_root: str, name: str):
    r"""The KG (edge_index sorted by head, edge_type), its entity and item
    counts; a seeded entity-induced sub-KG when a size is given."""
    folder, size = KGS[name]
    data = load_dataset(os.path.join(data_root, folder), log=False)
    edge_index, edge_type = data[KG].edge_index, data[KG].edge_type
    num_entities, num_items = data['entity'].num_nodes, data['item'].num_nodes
    if size is not None:
        new_id = _keep_random(num_entities, size)
        mask = (new_id[edge_index] >= 0).all(dim=0)
        edge_index, edge_type = new_id[edge_index[:, mask]], edge_type[mask]
        num_items = int((new_id[:num_items] >= 0).sum())
        num_entities = size
    return edge_index, edge_type, num_entities, num_items


def _keep_random(num_nodes: int, size: int) -> torch.Tensor:
    r"""New ids of a seeded random subset of :obj:`size` nodes (-1 for
    dropped ones), in the original order (so items stay first)."""
    generator = torch.Generator().manual_seed(0)
    keep = torch.randperm(num_nodes, generator=generator)
    keep = torch.sort(keep[:size]).values
    new_id = torch.full((num_nodes, ), -1)
    new_id[keep] = torch.arange(size)
    return new_id


def subsample(data, fraction: float):
    r"""The dataset graph induced by a seeded random :obj:`fraction` of the
    users and of the entities (items among them): the interactions and KG
    edges whose two ends are both kept."""
    out = data.clone()
    new_user = _keep_random(data['user'].num_nodes,
                            round(fraction * data['user'].num_nodes))
    new_entity = _keep_random(data['entity'].num_nodes,
                              round(fraction * data['entity'].num_nodes))
    num_items = data['item'].num_nodes
    store = out[USER_ITEM]
    for key in ('edge_index', 'val_edge_index', 'test_edge_index'):
        pairs = store[key]
        pairs = torch.stack([new_user[pairs[0]], new_entity[pairs[1]]])
        store[key] = pairs[:, (pairs >= 0).all(dim=0)]
    out[ITEM_USER].edge_index = store.edge_index.flip(0)
    kg = out[KG]
    mask = (new_entity[kg.edge_index] >= 0).all(dim=0)
    kg.edge_index = new_entity[kg.edge_index[:, mask]]
    kg.edge_type = kg.edge_type[mask]
    kg.num_triplets = int(mask.sum()) // 2
    out['user'].num_nodes = int((new_user >= 0).sum())
    out['item'].num_nodes = int((new_entity[:num_items] >= 0).sum())
    out['entity'].num_nodes = int((new_entity >= 0).sum())
    return out


#: The noise columns DiffKG's steps use on a CPU (its noise_columns=0).
NOISE_COLUMNS = SAMPLED_COLUMNS


def sparse_steps(model, optimizers, diffusion, batches, ptr, col,
                 item_user, entity, num_columns=NOISE_COLUMNS):
    r"""Denoiser steps of the sparse formulation over :obj:`batches` of
    heads, as DiffKG trains them (its default :obj:`noise_columns`)."""
    for batch in batches:
        support = sample_support(ptr, col, batch, model.num_entities)
        t = torch.randint(diffusion.steps, batch.shape)
        loss, _, _ = denoiser_loss(model, diffusion, support, t, item_user,
                                   entity[batch], num_columns=num_columns)
        for optimizer in optimizers:
            optimizer.zero_grad()
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()


def case_parser(description: str, methods, **defaults):
    r"""The arguments every speed script takes (``--kg``, ``--method``,
    ``--repeats``, ``--threads``, ...)."""
    import argparse
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--data-root', default='../shared/data')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--kgs', nargs='+', default=defaults.get('kgs'))
    parser.add_argument('--kg', default=None, help=argparse.SUPPRESS)
    parser.add_argument('--method', choices=methods, default=None,
                        help=argparse.SUPPRESS)
    parser.add_argument('--case', action='store_true',
                        help=argparse.SUPPRESS)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--max-batches', type=int, default=None)
    parser.add_argument('--output', default='benchmarks/results/speed.jsonl')
    return parser


def run_case(script: str, args, kg: str, method: str, extra=(),
             python: str = sys.executable) -> dict:
    r"""Runs :obj:`script` for one :obj:`kg` and :obj:`method` in a fresh
    process; returns its JSON record (or the error it ended with)."""
    command = [python, script, '--case', '--data-root', args.data_root,
               '--threads', str(args.threads), '--kg', kg, '--method',
               method, '--repeats', str(args.repeats), *extra]
    if args.max_batches:
        command += ['--max-batches', str(args.max_batches)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        return {'kg': kg, 'method': method,
                'error': result.stderr.strip().splitlines()[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def synchronize(device: torch.device) -> None:
    r"""Waits for the device's kernels (a GPU's; nothing on the CPU)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def emit(records, path=None) -> None:
    r"""Prints each record as a JSON line and, given a :obj:`path`, appends
    it there."""
    for record in records:
        print(json.dumps(record), flush=True)
        if path:
            with open(path, 'a') as f:
                f.write(json.dumps(record) + '\n')


def append_records(path: str, benchmark: str, threads: int,
                   records) -> None:
    r"""Appends one JSON line per record to :obj:`path`, each naming the
    package commit that ran it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    commit = package_commit()
    with open(path, 'a') as f:
        for record in records:
            f.write(json.dumps({'benchmark': benchmark, 'threads': threads,
                                'commit': commit, **record}) + '\n')
