r"""The KG recommenders under the package's protocol, and what each gains
from its knowledge graph.

Two tables from one set of runs (each one ``diffkg-pyg train`` with the
model's defaults, the same epoch cap and patience for every model, model
selection on validation Recall@20; existing result files are kept, so the
script resumes):

1. **KG recommenders**: every model of --models on every dataset, over
   --seeds: test Recall@20 / NDCG@20, mean ± std, the best epochs and the
   training seconds per epoch;
2. **KG utility**: every KG model with the real KG and each --ablations
   (``remove``, ``shuffle:0.5``, ``drop:0.5``; the ablation seed is the
   run's seed; DiffKG has no ``remove`` run, its diffusion needs KG
   edges): test Recall@20 of all users and of the coldest activity bucket
   (the users with the fewest train interactions).

    python benchmarks/kg_peers.py --data-root ../shared/data \
        --datasets synthetic lastfm-hetrec2011 --seeds 0 1 2 --threads 1
    python benchmarks/kg_peers.py --table-only

``--jobs 2`` runs two trainings at once (give each ``--threads 1`` on two
cores). Each run checkpoints every epoch under ``RESULTS/checkpoints/`` and
an interrupted run continues from its last epoch when the script is run
again; the checkpoints of a finished run are deleted.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from common import mean_std as cell

KG_MODELS = ('diffkg', 'kgin', 'kgat', 'kgcl')
# DiffKG's diffusion and its two views need KG edges: no `remove` run.
NEEDS_EDGES = ('diffkg', )


def ablations(args, model):
    return [a for a in args.ablations
            if not (a == 'remove' and model in NEEDS_EDGES)]


def path_of(args, dataset, model, ablation, seed):
    tag = 'kg' if ablation is None else ablation.replace(':', '')
    return os.path.join(args.results, f'{dataset}-{model}-{tag}-s{seed}.json')


def run(args, dataset, model, ablation, seed):
    path = path_of(args, dataset, model, ablation, seed)
    if os.path.exists(path):
        return
    data = dataset if dataset == 'synthetic' else os.path.join(
        args.data_root, dataset)
    checkpoints = os.path.join(
        args.results, 'checkpoints',
        os.path.splitext(os.path.basename(path))[0])
    command = [sys.executable, '-m', 'diffkg_pyg', 'train', data, '--model',
               model, '--seed', str(seed), '--epochs', str(args.epochs),
               '--patience', str(args.patience), '--threads',
               str(args.threads), '--output', path, '--checkpoint-dir',
               checkpoints]
    if ablation is not None:
        command += ['--kg-ablation', ablation, '--kg-ablation-seed',
                    str(seed)]
    last = os.path.join(checkpoints, 'last.pt')
    if os.path.exists(last):
        command += ['--resume', last]
    sys.stdout.write(' '.join(command) + '\n')  # One write: jobs interleave.
    sys.stdout.flush()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(checkpoints, ignore_errors=True)


def schedule(args):
    """Every run, the main table's runs (real KG, all seeds) first."""
    out = []
    for dataset in args.datasets:
        for seed in args.seeds:
            out += [(dataset, model, None, seed) for model in args.models]
    for dataset in args.datasets:
        for seed in args.seeds:
            for model in (m for m in args.models if m in KG_MODELS):
                out += [(dataset, model, ablation, seed)
                        for ablation in ablations(args, model)]
    return out


def records(args, dataset, model, ablation):
    out = []
    for seed in args.seeds:
        path = path_of(args, dataset, model, ablation, seed)
        if os.path.exists(path):
            with open(path) as f:
                out.append(json.load(f))
    return out


def coldest(record):
    buckets = record['test_by_activity']
    first = next(iter(buckets))  # The coldest bucket comes first.
    return first, buckets[first]['recall@20']


def tables(args):
    lines = ['| dataset | model | test R@20 | test N@20 | best epoch | '
             's/epoch | seeds |', '|---|---|---:|---:|---:|---:|---:|']
    for dataset in args.datasets:
        for model in args.models:
            rs = records(args, dataset, model, None)
            if not rs:
                continue
            per_epoch = [r['phase_seconds']['train'] / r['epochs_run']
                         for r in rs]
            lines.append(
                f"| {dataset} | {model} | "
                f"{cell([r['test']['recall@20'] for r in rs])} | "
                f"{cell([r['test']['ndcg@20'] for r in rs])} | "
                f"{cell([r['best_epoch'] for r in rs], 0)} | "
                f"{cell(per_epoch, 2)} | {len(rs)} |")
    lines += ['', '| dataset | model | KG | test R@20, all users | '
              'test R@20, coldest users | seeds |',
              '|---|---|---|---:|---:|---:|']
    for dataset in args.datasets:
        for model in (m for m in args.models if m in KG_MODELS):
            for ablation in [None] + ablations(args, model):
                rs = records(args, dataset, model, ablation)
                if not rs:
                    continue
                bucket = coldest(rs[0])[0]
                lines.append(
                    f"| {dataset} | {model} | {ablation or 'real'} | "
                    f"{cell([r['test']['recall@20'] for r in rs])} | "
                    f"{cell([coldest(r)[1] for r in rs])} ({bucket}) | "
                    f'{len(rs)} |')
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data-root', default='../shared/data')
    parser.add_argument('--datasets', nargs='+',
                        default=['synthetic', 'lastfm-hetrec2011'])
    parser.add_argument('--models', nargs='+', default=[
        'diffkg', 'kgin', 'kgat', 'kgcl', 'lightgcn', 'mf'])
    parser.add_argument('--ablations', nargs='*',
                        default=['remove', 'shuffle:0.5', 'drop:0.5'])
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--epochs', type=int, default=400)
    parser.add_argument('--patience', type=int, default=20)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--jobs', type=int, default=1,
                        help='trainings run at once')
    parser.add_argument('--results',
                        default='benchmarks/results/kg-peers-protocol')
    parser.add_argument('--table-only', action='store_true')
    args = parser.parse_args()
    os.makedirs(args.results, exist_ok=True)
    if not args.table_only:
        with ThreadPoolExecutor(args.jobs) as pool:
            for done in [pool.submit(run, args, *job)
                         for job in schedule(args)]:
                done.result()
    print(tables(args))


if __name__ == '__main__':
    main()
