r"""Epoch time and peak memory of data-parallel training: the same run
(model, data, global batch, seed) with 1 process and with P processes under
``torchrun --standalone`` (gloo on the CPU, NCCL with ``--device cuda``),
side by side in one invocation, the thread count per process fixed. Prints
one Markdown row per configuration: the mean seconds of the training epochs
after the first (and DiffKG's phases), the ratio to the 1-process run, the
test Recall@20 (which must agree) and the peak memory of every rank.

    python benchmarks/distributed.py --data ../shared/data/lastfm-hetrec2011 \
        --models diffkg lightgcn --epochs 3 --runs 1x1 1x2 2x1 \
        --results benchmarks/results/distributed

``--runs PxT``: P processes with T threads each (``1x2`` is one process
with both cores of a 2-core machine, ``2x1`` two processes with one each);
the ratio is to the first. Each run's log lands beside its JSON.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

PHASES = ('diffusion_seconds', 'rebuild_seconds', 'recommendation_seconds')


def run(args, model, processes, threads):
    name = os.path.basename(os.path.normpath(args.data))
    output = os.path.join(args.results,
                          f'{name}-{model}-{processes}x{threads}.json')
    if not os.path.exists(output):
        command = [sys.executable, '-m', 'torch.distributed.run',
                   '--standalone', '--nproc_per_node', str(processes), '-m',
                   'diffkg_pyg', 'train', args.data, '--model', model,
                   '--epochs', str(args.epochs), '--patience',
                   str(args.epochs), '--threads', str(threads), '--device',
                   args.device, '--output', output, *args.extra]
        print(' '.join(command), flush=True)
        env = {**os.environ, 'OMP_NUM_THREADS': str(threads)}
        with open(output[:-len('.json')] + '.log', 'w') as log:
            subprocess.run(command, check=True, env=env, stdout=log,
                           stderr=subprocess.STDOUT)
    with open(output) as f:
        return json.load(f)


def mean_after_first(record, key):
    values = [r[key] for r in record['history'][1:] if key in r]
    return statistics.mean(values) if values else float('nan')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', default='synthetic')
    parser.add_argument('--models', nargs='+', default=['diffkg',
                                                         'lightgcn'])
    parser.add_argument('--epochs', type=int, default=3)
    parser.add_argument('--runs', nargs='+', default=['1x2', '2x1'])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--results', default='benchmarks/results/'
                        'distributed')
    parser.add_argument('extra', nargs='*',
                        help='more train flags (after --)')
    args = parser.parse_args()
    os.makedirs(args.results, exist_ok=True)
    print('| model | processes x threads | s / epoch | ratio to first '
          '| diffusion / rebuild / recommendation s | test R@20 | peak '
          'MiB per rank |')
    print('|---|---|---:|---:|---|---:|---|')
    for model in args.models:
        base = None
        for spec in args.runs:
            processes, threads = (int(x) for x in spec.split('x'))
            record = run(args, model, processes, threads)
            seconds = mean_after_first(record, 'train_seconds')
            base = base or seconds
            phases = ' / '.join(f'{mean_after_first(record, k):.1f}'
                                for k in PHASES if k in record['history'][0])
            peaks = record.get('peak_rss_mb_ranks', [record['peak_rss_mb']])
            print(f"| {model} | {processes} x {threads} | {seconds:.2f} | "
                  f"{seconds / base:.2f} | {phases or '-'} | "
                  f"{record['test']['recall@20']:.4f} | "
                  f"{', '.join(f'{p:,.0f}' for p in peaks)} |", flush=True)


if __name__ == '__main__':
    main()
