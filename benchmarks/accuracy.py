r"""Accuracy of DiffKG, its ablations, LightGCN and DiffRec under one
protocol (same splits, validation early stopping, test Recall/NDCG@10/20/40),
several seeds; every run is one ``diffkg-pyg train`` whose JSON lands in
--results (existing files are kept, so the script resumes), then a Markdown
table of means and standard deviations is printed, with the mean training
seconds per epoch, seconds per validation and the peak memory of the runs
(where their JSON has it).

    python benchmarks/accuracy.py --data-root ../shared/data \
        --datasets lastfm-hetrec2011 synthetic --seeds 0 1 2 --jobs 2 \
        --threads 1
    python benchmarks/accuracy.py --table-only \
        --plot benchmarks/results/learning-curves
    python benchmarks/accuracy.py --datasets diffrec-ml-1m-clean \
        --variants diffrec --preset-protocol \
        --results benchmarks/results/diffrec-ml-1m

With --preset-protocol the runs take the epoch cap, validation interval and
patience of the model's dataset preset (DiffRec's published protocol on
its datasets) instead of --epochs and --patience.

With --plot (needs matplotlib, the ``[bench]`` extra), one PNG per dataset
of validation Recall@20 per epoch, every run as one line.
"""
import argparse
import concurrent.futures
import glob
import json
import os
import statistics
import subprocess
import sys

PRESET = {'alibaba-ifashion': 'alibaba', 'last-fm': 'lastfm',
          'mind': 'mind'}
# The presets of the DiffRec models, by dataset folder:
DIFFREC_PRESET = {'diffrec-ml-1m-clean': 'ml-1m'}
VARIANTS = {
    'diffkg': [],
    'no-diffusion': ['--no-diffusion'],
    'no-ckgc': ['--ckgc-weight', '0'],
    'no-cl': ['--ssl-weight', '0'],
    'published-code': ['--views', 'published-code'],
    'lightgcn': ['--model', 'lightgcn'],
    'diffrec': ['--model', 'diffrec'],
    'tdiffrec': ['--model', 'tdiffrec'],
    'ldiffrec': ['--model', 'ldiffrec'],
    'ltdiffrec': ['--model', 'ltdiffrec'],
}
METRICS = ['recall@20', 'ndcg@20', 'recall@10', 'ndcg@10', 'recall@40',
           'ndcg@40']


def run(args, dataset, variant, seed):
    path = os.path.join(args.results, f'{dataset}-{variant}-s{seed}.json')
    if os.path.exists(path):
        return
    data = (dataset if dataset == 'synthetic' else
            os.path.join(args.data_root, dataset))
    command = [sys.executable, '-m', 'diffkg_pyg', 'train', data,
               '--seed', str(seed), '--threads', str(args.threads),
               '--output', path, *VARIANTS[variant]]
    if not args.preset_protocol:
        command += ['--epochs', str(args.epochs), '--patience',
                    str(args.patience), '--eval-every', str(args.eval_every)]
    presets = DIFFREC_PRESET if 'diffrec' in variant else PRESET
    if variant != 'lightgcn' and dataset in presets:
        command += ['--preset', presets[dataset]]
    print(' '.join(command), flush=True)
    # The record names the package's commit itself (`code`).
    subprocess.run(command, check=True)


def table(results: str) -> str:
    runs = {}
    for path in sorted(glob.glob(os.path.join(results, '*.json'))):
        with open(path) as f:
            record = json.load(f)
        name = os.path.basename(path)[:-5].rsplit('-s', 1)[0]
        runs.setdefault(name, []).append(record)
    lines = ['| dataset-variant | seeds | best epochs | ' +
             ' | '.join(METRICS) + ' | s/epoch | s/validation | peak MiB |',
             '|---|---|---|' + '---:|' * (len(METRICS) + 3)]
    for name, records in runs.items():
        cells = []
        for metric in METRICS:
            values = [r['test'][metric] for r in records]
            spread = (f' ± {statistics.stdev(values):.4f}'
                      if len(values) > 1 else '')
            cells.append(f'{statistics.mean(values):.4f}{spread}')
        epochs = ', '.join(f"{r['best_epoch']}/{r['epochs_run']}"
                           for r in records)
        for key in ('train_seconds', 'eval_seconds'):
            values = [h[key] for r in records for h in r['history']
                      if key in h]
            cells.append(f'{statistics.mean(values):.1f}' if values else '')
        peaks = [r['peak_rss_mb'] for r in records if r.get('peak_rss_mb')]
        cells.append(f'{max(peaks):,.0f}' if peaks else '')
        lines.append(f'| {name} | {len(records)} | {epochs} | ' +
                     ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data-root', default='../shared/data')
    parser.add_argument('--datasets', nargs='+',
                        default=['lastfm-hetrec2011', 'synthetic'])
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS),
                        choices=list(VARIANTS))
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--epochs', type=int, default=400)
    parser.add_argument('--patience', type=int, default=20)
    parser.add_argument('--eval-every', type=int, default=1,
                        help='epochs between validations')
    parser.add_argument('--preset-protocol', action='store_true',
                        help="the preset's epochs, validation interval and "
                        'patience')
    parser.add_argument('--threads', type=int, default=2,
                        help='torch threads per run')
    parser.add_argument('--jobs', type=int, default=1,
                        help='runs in parallel (jobs x threads <= cores)')
    parser.add_argument('--results', default='benchmarks/results/accuracy')
    parser.add_argument('--table-only', action='store_true')
    parser.add_argument('--plot', default=None,
                        help='write learning-curve PNGs into this folder')
    args = parser.parse_args()
    os.makedirs(args.results, exist_ok=True)
    if not args.table_only:
        todo = [(dataset, variant, seed) for dataset in args.datasets
                for variant in args.variants for seed in args.seeds]
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            for future in [pool.submit(run, args, *item) for item in todo]:
                future.result()
    print(table(args.results))
    if args.plot:
        plot(args.results, args.plot)


def plot(results: str, folder: str) -> None:
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise SystemExit('the plots need matplotlib: pip install '
                         '".[bench]"') from error
    runs = {}
    for path in sorted(glob.glob(os.path.join(results, '*.json'))):
        name = _name(path)
        if name is not None:  # Runs of other variants are not plotted.
            runs.setdefault(name[0], []).append((*name[1:], path))
    os.makedirs(folder, exist_ok=True)
    for dataset, items in runs.items():
        fig, axis = plt.subplots(figsize=(7, 4.5))
        colours = {}
        for variant, _, path in items:
            with open(path) as f:  # Validated epochs only:
                history = [h for h in json.load(f)['history']
                           if 'valid_recall@20' in h]
            first = variant not in colours
            colour = colours.setdefault(variant, f'C{len(colours)}')
            axis.plot([h['epoch'] for h in history],
                      [h['valid_recall@20'] for h in history], color=colour,
                      linewidth=1, label=variant if first else None)
        axis.set_xlabel('epoch')
        axis.set_ylabel('validation Recall@20')
        axis.set_title(f'{dataset}: one line per seed')
        axis.grid(True, alpha=0.3)
        axis.legend()
        fig.tight_layout()
        path = os.path.join(folder, f'{dataset}.png')
        fig.savefig(path, dpi=120)
        plt.close(fig)
        print(f'plot written to {path}')


def _name(path: str):
    r"""(dataset, variant, seed) of a result file named
    ``{dataset}-{variant}-s{seed}.json``; :obj:`None` for other variants."""
    stem, seed = os.path.basename(path)[:-5].rsplit('-s', 1)
    for variant in sorted(VARIANTS, key=len, reverse=True):
        if stem.endswith('-' + variant):
            return stem[:-len(variant) - 1], variant, int(seed)
    return None


if __name__ == '__main__':
    main()
