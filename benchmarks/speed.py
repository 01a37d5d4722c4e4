r"""Speed and memory of diffkg_pyg against the dense formulation, measured
side by side in one run of this script (every case in its own subprocess,
so that its peak RSS is its own).

    python benchmarks/speed.py diffusion --data-root ../shared/data
    python benchmarks/speed.py attention --data-root ../shared/data
    python benchmarks/speed.py rebuild --data-root ../shared/data
    python benchmarks/speed.py compile --data-root ../shared/data
    python benchmarks/speed.py scaling --data-root ../shared/data \
        --plot benchmarks/results/scaling.png
    python benchmarks/speed.py accelerators --data-root ../shared/data \
        --python-ext /path/to/venv-with-torch-scatter/bin/python

Each prints a Markdown table and appends JSON records to --output.
"""
import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
import torch_geometric.typing as pyg_typing
from accuracy import PRESET  # The dataset -> preset map of the benchmarks.

from diffkg_pyg import PRESETS, DiffKG
from diffkg_pyg.data import ITEM_USER, KG, USER_ITEM, load_dataset
from diffkg_pyg.evaluation import gather_rows, to_csr
from diffkg_pyg.nn import GaussianDiffusion, KGAttentionConv, SparseDenoiser
from diffkg_pyg.nn.denoiser import timestep_embedding
from diffkg_pyg.nn.kg_diffusion import (
    denoiser_loss,
    rebuild_kg,
    sample_support,
    segment_top_k,
)
from diffkg_pyg.optim import SparseRowAdam
from diffkg_pyg.training import DiffKGTrainer

HIDDEN, TIME_CHANNELS, DIM, BATCH = 1000, 10, 64, 1024
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


class DenseDenoiser(torch.nn.Module):
    r"""The method's denoiser as the authors write it: dense rows of length
    N, Linear(N + d_t, H), tanh, Linear(H, N)."""
    def __init__(self, num_entities: int) -> None:
        super().__init__()
        self.time_layer = torch.nn.Linear(TIME_CHANNELS, TIME_CHANNELS)
        self.in_layer = torch.nn.Linear(num_entities + TIME_CHANNELS, HIDDEN)
        self.out_layer = torch.nn.Linear(HIDDEN, num_entities)

    def forward(self, x, t):
        time = self.time_layer(timestep_embedding(t, TIME_CHANNELS))
        x = F.dropout(F.normalize(x, dim=-1), 0.5, self.training)
        hidden = torch.tanh(self.in_layer(torch.cat([x, time], dim=-1)))
        return self.out_layer(hidden)


def dense_memory_gb(num_entities: int) -> float:
    r"""Lower bound of the dense phase's memory: weights, gradients and two
    Adam moments of the two N x H layers, plus about eight B x N float
    activations (rows, noise, input, output and their gradients)."""
    weights = 2 * num_entities * HIDDEN * 4
    return (4 * weights + 8 * BATCH * num_entities * 4) / 2**30


def diffusion_case(args) -> dict:
    torch.manual_seed(0)
    edge_index, edge_type, n, num_items = load_kg(args.data_root, args.kg)
    ptr, col = to_csr(edge_index, n)
    heads = torch.nonzero(ptr[1:] > ptr[:-1]).view(-1)
    heads = heads[torch.randperm(heads.numel())]
    batches = list(torch.split(heads, BATCH))
    item_user = torch.randn(num_items, DIM)
    entity = torch.randn(n, DIM)
    diffusion = GaussianDiffusion()
    baseline = current_rss_gb()
    measured = batches  # The sparse pass always runs in full.
    if args.method == 'dense' and args.max_batches:
        measured = batches[:args.max_batches]
    start = time.perf_counter()
    if args.method == 'sparse':
        model = SparseDenoiser(n, HIDDEN, TIME_CHANNELS)
        optimizers = [torch.optim.Adam(model.dense_parameters()),
                      SparseRowAdam(model.sparse_parameters())]
        sparse_steps(model, optimizers, diffusion, measured, ptr, col,
                     item_user, entity)
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        rebuild_kg(model, diffusion, edge_index, edge_type, n)
        rebuild_seconds = time.perf_counter() - start
        rebuild_batches = len(batches)
    else:
        model = DenseDenoiser(n)
        optimizer = torch.optim.Adam(model.parameters())
        for batch in measured:
            row, tail = gather_rows(ptr, col, batch)
            x0 = torch.zeros(batch.numel(), n)
            x0[row, tail] = 1.0
            t = torch.randint(diffusion.steps, batch.shape)
            x_t = diffusion.q_sample(x0, t[:, None], torch.randn_like(x0))
            x_hat = model(x_t, t)
            diff = (diffusion.loss_weight[t].float() *
                    (x0 - x_hat).square().mean(dim=-1)).mean()
            z = x_hat[:, :num_items] @ item_user
            ckgc = (z - entity[batch]).square().mean()
            loss = 0.5 * diff + 0.5 * ckgc
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        train_seconds = time.perf_counter() - start
        model.eval()
        start = time.perf_counter()
        rebuild_batches = min(len(batches), args.max_batches or len(batches))
        with torch.no_grad():
            for batch in batches[:rebuild_batches]:
                row, tail = gather_rows(ptr, col, batch)
                x = torch.zeros(batch.numel(), n)
                x[row, tail] = 1.0
                for i in reversed(range(diffusion.steps)):
                    t = torch.full(batch.shape, i)
                    x = diffusion.posterior_mean(model(x, t), x, t[:, None])
                segment_top_k(x[row, tail], row, 1)
        rebuild_seconds = time.perf_counter() - start
    scale = len(batches) / len(measured)
    return {
        'kg': args.kg, 'method': args.method, 'num_entities': n,
        'num_edges': int(edge_index.size(1)), 'batches': len(batches),
        'measured_batches': len(measured),
        'train_seconds': train_seconds * scale,
        'rebuild_seconds': rebuild_seconds * len(batches) / rebuild_batches,
        'peak_rss_gb': peak_rss_gb(), 'baseline_rss_gb': baseline,
        'extrapolated': scale != 1.0,
    }


def sparse_steps(model, optimizers, diffusion, batches, ptr, col,
                 item_user, entity):
    r"""Denoiser steps of the sparse formulation over :obj:`batches` of
    heads."""
    for batch in batches:
        support = sample_support(ptr, col, batch, model.num_entities)
        t = torch.randint(diffusion.steps, batch.shape)
        loss, _, _ = denoiser_loss(model, diffusion, support, t, item_user,
                                   entity[batch])
        for optimizer in optimizers:
            optimizer.zero_grad()
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()


class PerEdgeAttention(KGAttentionConv):
    r"""The literal form: concatenate head and tail per edge, multiply by
    W."""
    def forward(self, x, edge_index, edge_type, relation_emb):
        out = self.propagate(edge_index, x=x, relation=relation_emb[
            edge_type], size=(x.size(0), x.size(0)))
        return x + out

    def message(self, x_i, x_j, relation, index, ptr, size_i):
        from torch_geometric.utils import softmax
        score = ((torch.cat([x_i, x_j], dim=-1) @ self.weight) *
                 relation).sum(dim=-1)
        alpha = softmax(F.leaky_relu(score, self.negative_slope), index, ptr,
                        size_i)
        return alpha.unsqueeze(-1) * x_j


def attention_case(args) -> dict:
    torch.manual_seed(0)
    edge_index, edge_type, n, _ = load_kg(args.data_root, args.kg)
    layer = (KGAttentionConv if args.method == 'per-node' else
             PerEdgeAttention)(DIM)
    x = torch.randn(n, DIM, requires_grad=True)
    relation = torch.randn(int(edge_type.max()) + 1, DIM, requires_grad=True)
    times = []
    for _ in range(args.repeats + 1):
        start = time.perf_counter()
        layer(x, edge_index, edge_type, relation).square().sum().backward()
        times.append(time.perf_counter() - start)
    return {'kg': args.kg, 'method': args.method, 'num_entities': n,
            'num_edges': int(edge_index.size(1)),
            'median_seconds': statistics.median(times[1:]),
            'peak_rss_gb': peak_rss_gb(),
            'torch_scatter': pyg_typing.WITH_TORCH_SCATTER,
            'torch_sparse': pyg_typing.WITH_TORCH_SPARSE}


def rebuild_case(args) -> dict:
    torch.manual_seed(0)
    edge_index, edge_type, n, _ = load_kg(args.data_root, args.kg)
    model = SparseDenoiser(n, HIDDEN, TIME_CHANNELS)
    diffusion = GaussianDiffusion()
    record = {'kg': args.kg, 'num_entities': n,
              'num_edges': int(edge_index.size(1))}
    start = time.perf_counter()
    rebuild_kg(model, diffusion, edge_index, edge_type, n,
               generator=torch.Generator().manual_seed(0))
    record['vectorised_seconds'] = time.perf_counter() - start
    # The denoised score of every edge (shared by both selections):
    score = torch.rand(edge_index.size(1),
                       generator=torch.Generator().manual_seed(1))
    start = time.perf_counter()
    keep = segment_top_k(score, edge_index[0], 1)
    kept = edge_index[:, keep]
    pairs = torch.cat([kept, kept.flip(0)], dim=1)
    torch.unique(pairs[0] * n + pairs[1])
    record['vectorised_selection_seconds'] = time.perf_counter() - start
    start = time.perf_counter()
    _literal_selection(edge_index, edge_type, score)
    record['literal_selection_seconds'] = time.perf_counter() - start
    return record


def _literal_selection(edge_index, edge_type, score, k=1, keep_rate=0.5):
    # The authors' loop, literally: per head, per edge, Python objects.
    import random
    relation = {}
    per_head = {}
    for e in range(edge_index.size(1)):
        h, t = int(edge_index[0, e].numpy()), int(edge_index[1, e].numpy())
        relation[(h, t)] = int(edge_type[e].numpy())
        per_head.setdefault(h, []).append((float(score[e].numpy()), t))
    edges, seen = [], set()
    for h, candidates in per_head.items():
        for _, t in sorted(candidates, reverse=True)[:k]:
            for pair in ((h, t), (t, h)):
                if pair in seen or pair not in relation:
                    continue
                seen.add(pair)
                edges.append((pair[0], relation[pair], pair[1]))
    return [e for e in edges if random.random() < keep_rate]


def compile_case(args) -> dict:
    torch.manual_seed(0)
    edge_index, _, n, num_items = load_kg(args.data_root, args.kg)
    ptr, col = to_csr(edge_index, n)
    heads = torch.nonzero(ptr[1:] > ptr[:-1]).view(-1)
    batches = list(torch.split(heads[torch.randperm(heads.numel())],
                               BATCH))[:args.max_batches or None]
    diffusion = GaussianDiffusion()
    item_user, entity = torch.randn(num_items, DIM), torch.randn(n, DIM)
    model = SparseDenoiser(n, HIDDEN, TIME_CHANNELS,
                           use_compile=args.method == 'compiled')
    optimizers = [SparseRowAdam(model.sparse_parameters())]

    def epoch():
        start = time.perf_counter()
        sparse_steps(model, optimizers, diffusion, batches, ptr, col,
                     item_user, entity)
        return time.perf_counter() - start

    first = epoch()
    steady = statistics.median(epoch() for _ in range(args.repeats))
    return {'kg': args.kg, 'method': args.method, 'batches': len(batches),
            'first_pass_seconds': first, 'steady_pass_seconds': steady,
            'peak_rss_gb': peak_rss_gb()}


def epoch_case(args) -> dict:
    r"""One DiffKG epoch of :class:`DiffKGTrainer` on a saved dataset graph
    (:obj:`--kg`): the whole diffusion pass, the rebuild,
    :obj:`--max-batches` recommendation steps (scaled to the full pass when
    there are more) and one validation evaluation; eager (no compile)."""
    data = torch.load(args.kg, weights_only=False)
    baseline = current_rss_gb()
    torch.manual_seed(0)
    model = DiffKG.from_data(data, **{**PRESETS[args.method],
                                      'use_compile': False})
    trainer = DiffKGTrainer(model, data, seed=0)
    trainer.train()
    start = time.perf_counter()
    trainer.train_diffusion(1)
    diffusion_seconds = time.perf_counter() - start
    start = time.perf_counter()
    trainer.denoised_kg = model.rebuild_kg(*trainer.kg,
                                           generator=trainer.generator)
    rebuild_seconds = time.perf_counter() - start
    num_train = data[USER_ITEM].edge_index.size(1)
    steps = math.ceil(num_train / trainer.batch_size)
    trainer.max_batches = args.max_batches
    measured = min(steps, args.max_batches or steps)
    start = time.perf_counter()
    trainer.train_recommendation(1)
    step_seconds = (time.perf_counter() - start) / measured
    trainer.eval()
    start = time.perf_counter()
    trainer.valid_evaluator(trainer.score_users())
    eval_seconds = time.perf_counter() - start
    return {
        'graph': os.path.basename(args.kg), 'preset': args.method,
        'users': data['user'].num_nodes, 'items': data['item'].num_nodes,
        'entities': data['entity'].num_nodes,
        'kg_edges': int(data[KG].edge_index.size(1)),
        'interactions': num_train, 'steps': steps,
        'measured_steps': measured,
        'diffusion_seconds': diffusion_seconds,
        'rebuild_seconds': rebuild_seconds, 'step_seconds': step_seconds,
        'recommendation_seconds': step_seconds * steps,
        'eval_seconds': eval_seconds,
        'epoch_seconds': diffusion_seconds + rebuild_seconds +
        step_seconds * steps + eval_seconds,
        'extrapolated': measured < steps, 'peak_rss_gb': peak_rss_gb(),
        'baseline_rss_gb': baseline,
        'torch_scatter': pyg_typing.WITH_TORCH_SCATTER,
        'torch_sparse': pyg_typing.WITH_TORCH_SPARSE,
    }


CASES = {'diffusion': diffusion_case, 'attention': attention_case,
         'rebuild': rebuild_case, 'compile': compile_case,
         'epoch': epoch_case}


def run_case(args, kg, method, extra=(), python=sys.executable,
             benchmark=None):
    command = [python, __file__, '_case', benchmark or args.benchmark,
               '--data-root', args.data_root, '--threads', str(args.threads),
               '--kg', kg, '--method', method, '--repeats',
               str(args.repeats), *extra]
    if args.max_batches:
        command += ['--max-batches', str(args.max_batches)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        return {'kg': kg, 'method': method,
                'error': result.stderr.strip().splitlines()[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def _print_epoch(r):
    if 'error' in r:
        print(f"{r['kg']}: failed: {r['error']}", flush=True)
        return
    label = (f" ({r['measured_steps']} of {r['steps']} steps timed, scaled)"
             if r['extrapolated'] else '')
    print(f"{r['graph']}: {r['users']:,} users, {r['entities']:,} entities, "
          f"{r['interactions']:,} interactions, {r['kg_edges']:,} KG edges | "
          f"epoch {r['epoch_seconds']:.1f} s{label} = diffusion "
          f"{r['diffusion_seconds']:.1f} + rebuild {r['rebuild_seconds']:.1f}"
          f" + recommendation {r['recommendation_seconds']:.1f} "
          f"({r['step_seconds']:.3f} s/step) + evaluation "
          f"{r['eval_seconds']:.1f} | peak RSS {r['peak_rss_gb']:.2f} GB",
          flush=True)


def _plot_scaling(records, path, dataset):
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise SystemExit('the plot needs matplotlib: pip install '
                         '".[bench]"') from error
    records = [r for r in records if 'error' not in r]
    size = [r['kg_edges'] + r['interactions'] for r in records]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (('epoch_seconds', 'epoch'),
                       ('diffusion_seconds', 'diffusion phase'),
                       ('step_seconds', 'one recommendation step')):
        left.plot(size, [r[key] for r in records], 'o-', label=label)
    right.plot(size, [r['peak_rss_gb'] for r in records], 'o-',
               label='peak RSS')
    right.plot(size, [r['peak_rss_gb'] - r['baseline_rss_gb']
                      for r in records], 'o-',
               label='peak RSS above the loaded data')
    for axis, unit in ((left, 'seconds'), (right, 'GB')):
        axis.set_xscale('log')
        axis.set_yscale('log')
        axis.set_xlabel('KG edges + train interactions')
        axis.set_ylabel(unit)
        axis.grid(True, which='both', alpha=0.3)
        axis.legend()
    # Reference slopes through the smallest point: linear and quadratic.
    x0, y0 = size[0], records[0]['diffusion_seconds']
    for power, style in ((1, 'k--'), (2, 'k:')):
        left.plot(size, [y0 * (x / x0)**power for x in size], style,
                  linewidth=0.8, label=f'slope {power}')
    left.legend()
    fig.suptitle(f'DiffKG epoch on subsamples of {dataset} (CPU)')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f'plot written to {path}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('benchmark', choices=[
        'diffusion', 'attention', 'rebuild', 'compile', 'scaling',
        'accelerators', '_case'])
    parser.add_argument('case', nargs='?')
    parser.add_argument('--data-root', default='../shared/data')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--kgs', nargs='+', default=None)
    parser.add_argument('--kg', default=None)
    parser.add_argument('--method', default=None)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--max-batches', type=int, default=None,
                        help='dense diffusion: time this many batches and '
                        'scale to the full pass (labelled)')
    parser.add_argument('--dense-limit-gb', type=float, default=16.0)
    parser.add_argument('--dataset', default='alibaba-ifashion',
                        help='scaling: the dataset to subsample')
    parser.add_argument('--fractions', type=float, nargs='+',
                        default=[0.125, 0.25, 0.5, 1.0],
                        help='scaling: fractions of users and entities kept')
    parser.add_argument('--datasets', nargs='+',
                        default=['lastfm-hetrec2011', 'alibaba-ifashion'],
                        help='accelerators: datasets of the epoch case')
    parser.add_argument('--python-ext', default=None,
                        help='accelerators: an interpreter with '
                        'torch-scatter and torch-sparse installed')
    parser.add_argument('--plot', default=None,
                        help='scaling: write the plot here (PNG; needs '
                        'matplotlib, the [bench] extra)')
    parser.add_argument('--output', default='benchmarks/results/speed.jsonl')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.benchmark == '_case':
        args.benchmark = args.case
        print(json.dumps(CASES[args.case](args)))
        return

    records = []
    print(f'torch {torch.__version__}, {args.threads} threads, '
          f'{os.cpu_count()} CPUs')
    if args.benchmark == 'diffusion':
        for kg in args.kgs or list(KGS):
            sparse = run_case(args, kg, 'sparse')
            n = sparse['num_entities']
            need = dense_memory_gb(n)
            if need > args.dense_limit_gb:
                dense = {'kg': kg, 'method': 'dense',
                         'skipped': f'needs at least {need:.1f} GB'}
            else:
                dense = run_case(args, kg, 'dense')
            records += [sparse, dense]
            _print_diffusion(sparse, dense, need)
    elif args.benchmark == 'attention':
        for kg in args.kgs or ['last-fm']:
            pair = [run_case(args, kg, m) for m in ('per-node', 'per-edge')]
            records += pair
            if any('error' in r for r in pair):
                print(f'{kg}: failed: {pair}', flush=True)
                continue
            node, edge = (r['median_seconds'] for r in pair)
            print(f"{kg}: {pair[0]['num_edges']:,} edges | per-node split "
                  f"{node:.3f} s | per-edge concat {edge:.3f} s | ratio "
                  f"{edge / node:.2f}x (forward + backward, median of "
                  f"{args.repeats})")
    elif args.benchmark == 'rebuild':
        for kg in args.kgs or ['alibaba-ifashion']:
            record = run_case(args, kg, 'both')
            records.append(record)
            print(json.dumps(record))
    elif args.benchmark == 'compile':
        for kg in args.kgs or ['alibaba-ifashion']:
            pair = [run_case(args, kg, m) for m in ('eager', 'compiled')]
            records += pair
            for r in pair:
                print(json.dumps(r))
    elif args.benchmark == 'scaling':
        data = load_dataset(os.path.join(args.data_root, args.dataset),
                            log=False)
        with tempfile.TemporaryDirectory() as folder:
            for fraction in args.fractions:
                path = os.path.join(folder, f'{args.dataset}-{fraction}.pt')
                torch.save(subsample(data, fraction), path)
                record = {'fraction': fraction, **run_case(
                    args, path, PRESET.get(args.dataset, 'default'),
                    benchmark='epoch')}
                records.append(record)
                _print_epoch(record)
        if args.plot:
            _plot_scaling(records, args.plot, args.dataset)
    elif args.benchmark == 'accelerators':
        if args.python_ext is None:
            parser.error('accelerators needs --python-ext')
        pythons = {'without': sys.executable, 'with': args.python_ext}
        for kg in args.kgs or ['last-fm']:
            for label, python in pythons.items():
                record = {'accelerators': label, **run_case(
                    args, kg, 'per-node', python=python,
                    benchmark='attention')}
                records.append(record)
                print(f"attention, {kg}, {label} torch-scatter/sparse: "
                      f"{record.get('median_seconds', record.get('error'))}"
                      ' s', flush=True)
        with tempfile.TemporaryDirectory() as folder:
            for dataset in args.datasets:
                path = os.path.join(folder, f'{dataset}.pt')
                torch.save(load_dataset(os.path.join(args.data_root,
                                                     dataset), log=False),
                           path)
                for label, python in pythons.items():
                    record = {'accelerators': label, **run_case(
                        args, path, PRESET.get(dataset, 'default'),
                        python=python, benchmark='epoch')}
                    records.append(record)
                    print(f'{label} torch-scatter/sparse: ', end='')
                    _print_epoch(record)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, 'a') as f:
        for record in records:
            f.write(json.dumps({'benchmark': args.benchmark,
                                'threads': args.threads, **record}) + '\n')


def _print_diffusion(sparse, dense, need):
    if 'error' in sparse:
        print(f"{sparse['kg']}: sparse failed: {sparse['error']}", flush=True)
        return

    def phase(r):
        return r['train_seconds'] + r['rebuild_seconds']
    line = (f"{sparse['kg']}: N {sparse['num_entities']:,}, "
            f"{sparse['num_edges']:,} edges | sparse {phase(sparse):.1f} s "
            f"(train {sparse['train_seconds']:.1f} + rebuild "
            f"{sparse['rebuild_seconds']:.1f}), peak RSS "
            f"{sparse['peak_rss_gb']:.2f} GB")
    n = sparse['num_entities']
    line += (f" | the authors' dense N x N float64 KG alone: "
             f"{n * n * 8 / 2**30:.1f} GB")
    if 'skipped' in dense or 'error' in dense:
        line += (f" | dense not run: {dense.get('skipped') or dense['error']}"
                 f" (>= {need:.1f} GB)")
    else:
        label = (f" (extrapolated from {dense['measured_batches']} of "
                 f"{dense['batches']} batches)"
                 if dense['extrapolated'] else '')

        def growth(r):
            return r['peak_rss_gb'] - r['baseline_rss_gb']
        line += (f" | dense {phase(dense):.1f} s{label}, peak RSS "
                 f"{dense['peak_rss_gb']:.2f} GB | speed-up "
                 f"{phase(dense) / phase(sparse):.1f}x, peak RSS "
                 f"{dense['peak_rss_gb'] / sparse['peak_rss_gb']:.1f}x, "
                 f"growth above the loaded data "
                 f"{growth(dense) / max(1e-3, growth(sparse)):.1f}x")
    print(line, flush=True)


if __name__ == '__main__':
    main()
