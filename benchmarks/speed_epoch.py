r"""Whole DiffKG epochs (diffusion, rebuild, recommendation steps and one
validation pass, eager) on dataset graphs, each in its own process:

* ``scaling``: on seeded subsamples of a dataset's users and entities
  (fractions of each), with a plot of seconds and peak RSS against size;
* ``accelerators``: the attention layer and the epoch with and without
  torch-scatter / torch-sparse (a second interpreter that has them).

    python benchmarks/speed_epoch.py scaling --data-root ../shared/data \
        --plot benchmarks/results/scaling.png
    python benchmarks/speed_epoch.py accelerators \
        --data-root ../shared/data --python-ext /path/to/venv/bin/python
"""
import json
import math
import os
import sys
import tempfile
import time

import torch
import torch_geometric.typing as pyg_typing
from accuracy import PRESET  # The dataset -> preset map of the benchmarks.
from common import (
    append_records,
    case_parser,
    current_rss_gb,
    peak_rss_gb,
    run_case,
    subsample,
)

from diffkg_pyg.data import KG, USER_ITEM, load_dataset
from diffkg_pyg.process import retain_freed_memory
from diffkg_pyg.train import Trainer, get_recipe

ATTENTION = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                         'speed_attention.py')


def epoch_case(args) -> dict:
    r"""One DiffKG epoch of the package's trainer on a saved dataset graph
    (:obj:`--kg`, a file): the whole diffusion pass, the rebuild,
    :obj:`--max-batches` recommendation steps (scaled to the full pass when
    there are more) and one validation evaluation; eager (no compile)."""
    data = torch.load(args.kg, weights_only=False)
    baseline = current_rss_gb()
    recipe = get_recipe('diffkg')(preset=args.method, use_compile=False)
    trainer = Trainer(recipe, data, seed=0)
    model = trainer.model.train()
    start = time.perf_counter()
    recipe.train_diffusion(model, trainer.context, 1)
    diffusion_seconds = time.perf_counter() - start
    start = time.perf_counter()
    recipe.loop.rebuild(generator=trainer.context.generator)
    rebuild_seconds = time.perf_counter() - start
    num_train = data[USER_ITEM].edge_index.size(1)
    steps = math.ceil(num_train / trainer.context.batch_size)
    trainer.context.max_batches = args.max_batches
    measured = min(steps, args.max_batches or steps)
    start = time.perf_counter()
    recipe.train_recommendation(model, trainer.context, 1)
    step_seconds = (time.perf_counter() - start) / measured
    start = time.perf_counter()
    trainer.evaluate(trainer.valid_evaluator)
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
    parser = case_parser(__doc__.split('\n\n')[0],
                         ['default', 'lastfm', 'mind', 'alibaba'])
    parser.add_argument('benchmark', nargs='?',
                        choices=['scaling', 'accelerators'])
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    retain_freed_memory()  # As the command line does.
    if args.case:
        print(json.dumps(epoch_case(args)))
        return
    if args.benchmark is None:
        parser.error('name a benchmark: scaling or accelerators')
    print(f'torch {torch.__version__}, {args.threads} threads, '
          f'{os.cpu_count()} CPUs')
    records = []
    if args.benchmark == 'scaling':
        data = load_dataset(os.path.join(args.data_root, args.dataset),
                            log=False)
        with tempfile.TemporaryDirectory() as folder:
            for fraction in args.fractions:
                path = os.path.join(folder, f'{args.dataset}-{fraction}.pt')
                torch.save(subsample(data, fraction), path)
                record = {'fraction': fraction, **run_case(
                    __file__, args, path, PRESET.get(args.dataset,
                                                     'default'))}
                records.append(record)
                _print_epoch(record)
        if args.plot:
            _plot_scaling(records, args.plot, args.dataset)
    else:
        if args.python_ext is None:
            parser.error('accelerators needs --python-ext')
        pythons = {'without': sys.executable, 'with': args.python_ext}
        for kg in args.kgs or ['last-fm']:
            for label, python in pythons.items():
                record = {'accelerators': label, **run_case(
                    ATTENTION, args, kg, 'per-node', python=python)}
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
                        __file__, args, path, PRESET.get(dataset, 'default'),
                        python=python)}
                    records.append(record)
                    print(f'{label} torch-scatter/sparse: ', end='')
                    _print_epoch(record)
    append_records(args.output, args.benchmark, args.threads, records)


if __name__ == '__main__':
    main()
