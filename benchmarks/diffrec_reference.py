r"""The authors' DiffRec-family code beside ours, on DiffRec's published
ML-1M split.

``run`` (an environment with the authors' requirements, not this package:
torch, numpy, scipy, bottleneck, kmeans-pytorch) copies one variant's
folder of a checkout of YiyanXu/DiffRec (commit ``d35a6c6``) to a
temporary folder, patches it, and runs its ``main.py`` with the authors'
settings for ML-1M, writing their log to ``--log`` (arguments after ``--``
go to their parser)::

    python benchmarks/diffrec_reference.py run --reference CHECKOUT \
        --variant ldiffrec --data ../shared/data/diffrec-ml-1m-clean \
        --seed 0 --log RESULTS/authors-ldiffrec-seed0.log

``table`` (the package's environment) prints the table of the package's
runs (``DATASET-VARIANT-sS.json`` from ``benchmarks/accuracy.py``) beside
the authors' logs (``authors-VARIANT-seedS.log``) in ``--results`` and the
paper's figures, and each gap with its Welch t statistic.

The patches, and nothing else: the seed (their ``random_seed = 1``) is
``--seed``; torch uses ``--threads`` threads; SciPy's removed sparse
``.A`` is ``.toarray()``; the models are not saved (``torch.save`` is a
no-op). They run on the CPU (without their ``--cuda``), select the best
epoch on the validation split (as released) and report the test at it.

The settings: DiffRec's and L-DiffRec's are those of their released ML-1M
checkpoints (``inference.py``); the authors released no ML-1M T-DiffRec or
LT-DiffRec run, so those are DiffRec's and L-DiffRec's ML-1M settings with
the interaction weights from 0.1 to 1.0 (their default), as the package's
``ml-1m`` presets of ``tdiffrec`` and ``ltdiffrec`` are.
"""
import argparse
import glob
import json
import os
import os.path as osp
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

FOLDERS = {'diffrec': 'DiffRec', 'ldiffrec': 'L-DiffRec',
           'tdiffrec': 'T-DiffRec', 'ltdiffrec': 'LT-DiffRec'}
_COMMON = ['--batch_size', '400', '--emb_size', '10', '--mean_type', 'x0',
           '--steps', '40', '--noise_scale', '0.005', '--noise_min',
           '0.005', '--sampling_steps', '0', '--reweight', '1']
_DIFFREC = ['--lr', '0.001', '--weight_decay', '0', '--dims', '[200,600]',
            '--noise_max', '0.01']
_LATENT = ['--lr1', '0.001', '--lr2', '0.0005', '--wd1', '0', '--wd2', '0',
           '--n_cate', '2', '--in_dims', '[300]', '--out_dims', '[]',
           '--lamda', '0.03', '--mlp_dims', '[300]', '--noise_max', '0.02']
_WEIGHTS = ['--w_min', '0.1', '--w_max', '1.0']
SETTINGS = {'diffrec': _COMMON + _DIFFREC,
            'ldiffrec': _COMMON + _LATENT,
            'tdiffrec': _COMMON + _DIFFREC + _WEIGHTS,
            'ltdiffrec': _COMMON + _LATENT + _WEIGHTS}
# (old, new, how many times it must occur):
PATCHES = [
    ('random_seed = 1\n',
     'random_seed = int(os.environ["SEED"]); '
     'torch.set_num_threads(int(os.environ["THREADS"]))\n', 1),
    ('.A)', '.toarray())', None),
    ('torch.save(', '(lambda *a: None)(', None),
]


def patch(folder):
    for name in ('main.py', 'data_utils.py'):
        path = osp.join(folder, name)
        with open(path) as f:
            text = f.read()
        for old, new, count in PATCHES:
            found = text.count(old)
            if name == 'main.py' and count is not None and found != count:
                raise RuntimeError(f'{path}: expected {count} x {old!r}, '
                                   f'found {found}')
            text = text.replace(old, new)
        with open(path, 'w') as f:
            f.write(text)


def run(args):
    data = osp.abspath(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        folder = osp.join(tmp, FOLDERS[args.variant])
        shutil.copytree(osp.join(args.reference, FOLDERS[args.variant]),
                        folder)
        patch(folder)
        # Their loaders read DATA_PATH + 'train_list.npy' and, for the
        # latent variants, EMB_PATH + DATASET + '/item_emb.npy':
        command = [sys.executable, '-u', 'main.py', '--dataset',
                   osp.basename(data), '--data_path', data + '/']
        if args.variant in ('ldiffrec', 'ltdiffrec'):
            command += ['--emb_path', osp.dirname(data) + '/']
        command += [*SETTINGS[args.variant], *args.extra]
        env = dict(os.environ, SEED=str(args.seed),
                   THREADS=str(args.threads))
        os.makedirs(osp.dirname(osp.abspath(args.log)), exist_ok=True)
        with open(args.log, 'w') as log:
            subprocess.run(command, cwd=folder, env=env, stdout=log,
                           stderr=subprocess.STDOUT, check=True)


def read_log(path):
    r"""The best epoch and the test Recall / NDCG at 10 and 20 that an
    authors' log reports at its end (``None`` for an unfinished run)."""
    with open(path) as f:
        text = f.read()
    end = re.search(r'End\. Best Epoch (\d+).*?\[Test\]: Precision: \S+ '
                    r'Recall: (\S+) NDCG: (\S+)', text, re.S)
    if end is None:
        return None
    recall, ndcg = ([float(v) for v in end.group(i).split('-')]
                    for i in (2, 3))
    return {'best_epoch': int(end.group(1)), 'recall@10': recall[0],
            'recall@20': recall[1], 'ndcg@10': ndcg[0], 'ndcg@20': ndcg[1]}


#: The DiffRec paper's ML-1M figures (Recall@20, NDCG@20, Recall@10,
#: NDCG@10; L-DiffRec with 2 clusters).
PAPER = {'diffrec': (0.1787, 0.1148, 0.1058, 0.0901),
         'ldiffrec': (0.1809, 0.1122, 0.1060, 0.0868)}
METRICS = ('recall@20', 'ndcg@20', 'recall@10', 'ndcg@10')


def welch_t(a, b):
    return ((statistics.mean(a) - statistics.mean(b)) /
            (statistics.variance(a) / len(a) +
             statistics.variance(b) / len(b))**0.5)


def table(args):
    from common import mean_std as cell  # The package's environment.

    lines = ['| model | code | seeds | best epochs | Recall@20 | NDCG@20 | '
             'Recall@10 | NDCG@10 |', '|---|---|---:|---|---:|---:|---:|---:|']
    gaps = []
    for variant in FOLDERS:
        ours = []
        for path in sorted(glob.glob(osp.join(
                args.results, f'{args.dataset}-{variant}-s*.json'))):
            with open(path) as f:
                record = json.load(f)
            ours.append({'best_epoch': record['best_epoch'],
                         **record['test']})
        authors = [r for r in (read_log(path) for path in sorted(glob.glob(
            osp.join(args.results, f'authors-{variant}-seed*.log'))))
            if r is not None]
        for side, records in (('ours', ours),
                              ("authors' code here", authors)):
            if records:
                epochs = ', '.join(str(r['best_epoch']) for r in records)
                cells = ' | '.join(cell([r[m] for r in records])
                                   for m in METRICS)
                lines.append(f'| {FOLDERS[variant]} | {side} | '
                             f'{len(records)} | {epochs} | {cells} |')
        if variant in PAPER:
            lines.append(f'| {FOLDERS[variant]} | paper | | | ' + ' | '.join(
                f'{v:.4f}' for v in PAPER[variant]) + ' |')
        if len(ours) > 1 and len(authors) > 1:
            parts = []
            for m in METRICS:
                a, b = [r[m] for r in ours], [r[m] for r in authors]
                change = 100 * (statistics.mean(a) / statistics.mean(b) - 1)
                parts.append(f'{m} {change:+.1f} % (Welch t = '
                             f'{welch_t(a, b):.2f})')
            gaps.append(f'- {FOLDERS[variant]}, ours against the authors: '
                        + ', '.join(parts))
    print('\n'.join(lines + [''] + gaps))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('run', help="run one variant of the authors' code")
    p.add_argument('--reference', required=True,
                   help='a checkout of YiyanXu/DiffRec')
    p.add_argument('--variant', choices=list(FOLDERS), required=True)
    p.add_argument('--data', required=True,
                   help="a folder in DiffRec's layout (train_list.npy, ...)")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--log', required=True)
    p = sub.add_parser('table', help='ours beside the authors')
    p.add_argument('--dataset', default='diffrec-ml-1m-clean')
    p.add_argument('--results',
                   default='benchmarks/results/diffrec-ml-1m-family')
    args, extra = parser.parse_known_args()
    if extra and extra[0] == '--':
        extra = extra[1:]
    if args.command == 'run':
        args.extra = extra
        run(args)
    else:
        table(args)


if __name__ == '__main__':
    main()
