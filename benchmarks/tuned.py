r"""Tuned beside default: every model searched with the same budget (the same
number of trials and the same time cap on the trials' summed durations, the
same epoch cap and patience per trial, validation Recall@20 only), the 3
best configurations confirmed with 3 more seeds on validation, the winner
retrained with 5 seeds and tested, printed beside the default
configuration's rows, with a paired t-test (over the seeds) between DiffKG
and the best other model of each dataset.

Each search is one ``diffkg-pyg tune`` into ``--results/DATASET-MODEL/``
(resumable: a finished one is read back). The default rows are read from
the result JSONs of ``benchmarks/kg_peers.py`` (``DATASET-MODEL-kg-sS.json``)
or ``benchmarks/accuracy.py`` (``DATASET-MODEL-sS.json``) in the first
``--defaults`` folder that has the model's runs.

    python benchmarks/tuned.py --data-root ../shared/data \
        --datasets synthetic \
        --models lightgcn mf diffkg diffrec kgin kgat kgcl \
        --trials 30 --timeout 7200 --threads 1 \
        --results benchmarks/results/tuned-30
"""
import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys

from common import mean_std as cell

# Per (dataset, model) flags both the default rows and the searches used:
# a DiffRec validation on lastfm-hetrec2011 runs its reverse pass over all
# users, so it validated every 5 epochs there.
EXTRA = {('lastfm-hetrec2011', 'diffrec'): ['--eval-every', '5']}


def search(args, dataset, model):
    output = os.path.join(args.results, f'{dataset}-{model}')
    if os.path.exists(os.path.join(output, 'final.json')):
        return output
    data = (dataset if dataset == 'synthetic' else
            os.path.join(args.data_root, dataset))
    command = [sys.executable, '-m', 'diffkg_pyg', 'tune', data, '--model',
               model, '--trials', str(args.trials), '--timeout',
               str(args.timeout), '--epochs', str(args.epochs),
               '--patience', str(args.patience), '--final-seeds',
               str(args.final_seeds), '--sampler', args.sampler,
               '--threads', str(args.threads),
               '--output', output, *EXTRA.get((dataset, model), [])]
    print(' '.join(command), flush=True)
    subprocess.run(command, check=True)
    return output


def study_summary(output):
    trials = []
    for path in sorted(glob.glob(os.path.join(output, 'trials', '*.json'))):
        with open(path) as f:
            trials.append(json.load(f))
    states = {}
    for trial in trials:
        states[trial['state']] = states.get(trial['state'], 0) + 1
    seconds = sum(t.get('seconds', 0.0) for t in trials)
    return states, seconds


def confirmed(output):
    r"""The winner's mean validation Recall@20 over its confirmation
    seeds, with their spread (empty without a confirmation)."""
    path = os.path.join(output, 'confirm.json')
    if not os.path.exists(path):
        return ''
    with open(path) as f:
        summary = json.load(f)
    for row in summary['candidates']:
        if row['trial'] == summary['winner']:
            return cell(row['values'])
    return ''


def default_row(defaults, dataset, model):
    # accuracy.py names a run DATASET-MODEL-sS, kg_peers.py its real-KG
    # runs DATASET-MODEL-kg-sS; a glob DATASET-MODEL-s* would also match
    # kg_peers.py's ablations (DATASET-MODEL-shuffle0.5-sS).
    pattern = re.compile(re.escape(f'{dataset}-{model}') +
                         r'(-kg)?-s\d+\.json')
    for folder in defaults:
        names = os.listdir(folder) if os.path.isdir(folder) else []
        paths = sorted(os.path.join(folder, name) for name in names
                       if pattern.fullmatch(name))
        if paths:
            records = [json.load(open(p)) for p in paths]
            return [cell([r['test'][m] for r in records])
                    for m in ('recall@20', 'ndcg@20')] + [
                        cell([r['valid']['recall@20'] for r in records]),
                        str(len(records))]
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data-root', default='../shared/data')
    parser.add_argument('--datasets', nargs='+', default=['synthetic'])
    parser.add_argument('--models', nargs='+',
                        default=['lightgcn', 'mf', 'diffkg', 'diffrec',
                                 'kgin', 'kgat', 'kgcl'])
    parser.add_argument('--trials', type=int, default=30)
    parser.add_argument('--timeout', type=float, default=7200,
                        help="a search's budget: no trial starts once its "
                        "finished trials have taken this many seconds")
    parser.add_argument('--sampler', default='tpe')
    parser.add_argument('--epochs', type=int, default=400)
    parser.add_argument('--patience', type=int, default=20)
    parser.add_argument('--final-seeds', type=int, default=5)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--results', default='benchmarks/results/tuned-30')
    # The first folder with a model's rows gives them: kg-peers-protocol
    # holds the newest default runs of every model but DiffRec (DiffKG's
    # of the current code among them), with the same epoch cap and
    # patience as the searches.
    parser.add_argument('--defaults', nargs='+', default=[
        'benchmarks/results/kg-peers-protocol',
        'benchmarks/results/accuracy-fidelity', 'benchmarks/results/accuracy',
        'benchmarks/results/accuracy-diffrec'])
    parser.add_argument('--table-only', action='store_true')
    args = parser.parse_args()

    lines = ['| dataset | model | configuration | trials (complete/pruned/'
             'failed) | search s | valid R@20 | confirmed valid R@20 | '
             'test R@20 | test N@20 | seeds |',
             '|---|---|---|---|---:|---:|---:|---:|---:|---:|']
    for dataset in args.datasets:
        for model in args.models:
            output = os.path.join(args.results, f'{dataset}-{model}')
            if not args.table_only:
                search(args, dataset, model)
            default = default_row(args.defaults, dataset, model)
            if default:
                lines.append(f'| {dataset} | {model} | default | | | '
                             f'{default[2]} | | {default[0]} | '
                             f'{default[1]} | {default[3]} |')
            final = os.path.join(output, 'final.json')
            if not os.path.exists(final):
                continue
            with open(final) as f:
                summary = json.load(f)
            states, seconds = study_summary(output)
            counts = '/'.join(str(states.get(s, 0)) for s in
                              ('complete', 'pruned', 'failed'))
            test = summary['test']
            lines.append(
                f"| {dataset} | {model} | tuned (trial "
                f"{summary['best_trial']}) | {counts} | {seconds:,.0f} | "
                f"{summary['valid']:.4f} | {confirmed(output)} | "
                f"{test['recall@20']['mean']:.4f} ± "
                f"{test['recall@20']['std']:.4f} | "
                f"{test['ndcg@20']['mean']:.4f} ± "
                f"{test['ndcg@20']['std']:.4f} | "
                f"{len(summary['seeds'])} |")
    print('\n'.join(lines))
    for dataset in args.datasets:
        print(paired_test(args.results, dataset, args.models))


def final_recalls(results, dataset, model):
    output = os.path.join(results, f'{dataset}-{model}')
    if not os.path.exists(os.path.join(output, 'final.json')):
        return {}
    with open(os.path.join(output, 'final.json')) as f:
        best = json.load(f)['best_trial']
    # The winner's final runs only (a study's folder may hold an earlier
    # winner's too):
    paths = sorted(glob.glob(os.path.join(output, 'final',
                                          f'trial-{best:05d}-seed-*.json')))
    return {json.load(open(p))['seed']: json.load(open(p))['test'][
        'recall@20'] for p in paths}


def paired_test(results, dataset, models):
    r"""DiffKG against the other model of the best mean test Recall@20,
    paired by seed: a two-sided paired t-test."""
    from scipy import stats
    runs = {m: final_recalls(results, dataset, m) for m in models}
    others = {m: r for m, r in runs.items() if m != 'diffkg' and r}
    if not runs.get('diffkg') or not others:
        return f'{dataset}: no paired test (missing final seeds)'
    best = max(others, key=lambda m: statistics.mean(others[m].values()))
    seeds = sorted(set(runs['diffkg']) & set(others[best]))
    if len(seeds) < 2:
        return f'{dataset}: no paired test (fewer than 2 common seeds)'
    a = [runs['diffkg'][s] for s in seeds]
    b = [others[best][s] for s in seeds]
    test = stats.ttest_rel(a, b)
    return (f'{dataset}: DiffKG {statistics.mean(a):.4f} against {best} '
            f'{statistics.mean(b):.4f} test Recall@20 over seeds {seeds}: '
            f'paired t-test t = {test.statistic:.3f}, two-sided p = '
            f'{test.pvalue:.4f}')


if __name__ == '__main__':
    main()
