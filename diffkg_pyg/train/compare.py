r"""Runs compared plainly (``diffkg-pyg compare``): result JSONs (what
``train --output`` writes) grouped by model, their metrics as mean ± sample
standard deviation over the seeds, and every group tested against a
baseline group, paired by seed, with a two-sided paired :math:`t`-test
and a two-sided Wilcoxon signed-rank test (:func:`scipy.stats.ttest_rel`,
:func:`scipy.stats.wilcoxon`); runs that cannot be compared (another
dataset fingerprint, split or evaluation mode) are said to be so."""
import glob
import json
import os.path as osp
import statistics
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ['RunGroup', 'read_results', 'group_runs', 'compare_runs',
           'format_comparison', 'plot_curves']

#: The settings that make two runs of one model different configurations
#: (the seed pairs them instead).
_UNPAIRED = ('seed', 'eval_batch_size')


@dataclass
class RunGroup:
    r"""The runs of one model and configuration, by seed.

    Args:
        label (str): The model, and what sets this group apart from the
            model's other groups (e.g. :obj:`'kgin (kg_ablation=remove)'`).
        runs (dict): Seed to result record.
        paths (dict): Seed to the file it was read from.
    """
    label: str
    runs: Dict[int, Dict[str, Any]] = field(default_factory=dict)
    paths: Dict[int, str] = field(default_factory=dict)

    def values(self, split: str, metric: str) -> Dict[int, float]:
        r"""Seed to the :obj:`split` (:obj:`'test'` or :obj:`'valid'`)
        value of :obj:`metric` (the seeds whose record has it)."""
        return {s: float(r[split][metric]) for s, r in self.runs.items()
                if metric in (r.get(split) or {})}


def read_results(paths: Sequence[str]) -> List[Tuple[str, Dict[str, Any]]]:
    r"""The result records of :obj:`paths` (files, or folders whose
    ``*.json`` files are read; in a folder, JSON files that are not results,
    such as a study's, are skipped), as :obj:`(path, record)` pairs. A file
    named directly that is not a result raises :class:`ValueError` naming
    it."""
    out = []
    for path in paths:
        if osp.isdir(path):
            files, named = sorted(glob.glob(osp.join(path, '*.json'))), False
        elif osp.exists(path):
            files, named = [path], True
        else:
            raise FileNotFoundError(f'{path}: no such file or folder')
        for file in files:
            try:
                with open(file, encoding='utf-8') as f:
                    record = json.load(f)
            except (OSError, UnicodeDecodeError, ValueError) as error:
                raise ValueError(f'{file}: not a readable JSON file '
                                 f'({error})') from None
            if _is_result(record):
                out.append((file, record))
            elif named:
                raise ValueError(f'{file}: not a result of `diffkg-pyg '
                                 f'train --output` (it needs model, seed, '
                                 f'dataset and test)')
    if not out:
        raise ValueError(f'no result files in {", ".join(paths)}')
    return out


def _is_result(record: Any) -> bool:
    return (isinstance(record, dict) and isinstance(record.get('model'), str)
            and isinstance(record.get('seed'), int)
            and isinstance(record.get('dataset'), dict)
            and isinstance(record.get('test'), dict))


def _config(record: Dict[str, Any]) -> Dict[str, Any]:
    # What a run's configuration is, flattened (the seed aside).
    dataset = record['dataset']
    out = {'dataset': dataset.get('name'), 'preset': record.get('preset')}
    for key in ('kg_ablation', 'kg_ablation_seed'):
        if key in dataset:
            out[key] = dataset[key]
    for key, value in sorted((record.get('hyperparameters') or {}).items()):
        out[key] = value
    for key, value in sorted((record.get('settings') or {}).items()):
        if key not in _UNPAIRED and key != 'evaluation':
            out[key] = value
    evaluation = record.get('evaluation') or {}
    out['evaluation'] = 'full' if evaluation.get('mode', 'full') == 'full' \
        else ' '.join(str(evaluation.get(k)) for k in ('mode', 'negatives',
                                                       'sampler'))
    return out


def group_runs(results: Sequence[Tuple[str, Dict[str, Any]]]
               ) -> List[RunGroup]:
    r"""The runs grouped by model and configuration: one group per model
    where its runs differ only in the seed, else one per configuration,
    labelled by what differs. Two runs of one group with one seed raise
    :class:`ValueError` naming both files."""
    by_model: Dict[str, List[Tuple[str, Dict[str, Any]]]] = {}
    for path, record in results:
        by_model.setdefault(record['model'], []).append((path, record))
    groups = []
    for model, runs in by_model.items():
        configs = [_config(r) for _, r in runs]
        keys = sorted({k for c in configs for k in c})
        differ = [k for k in keys
                  if len({json.dumps(c.get(k), sort_keys=True)
                          for c in configs}) > 1]
        by_label: Dict[str, RunGroup] = {}
        for (path, record), config in zip(runs, configs):
            label = model if not differ else f'{model} (' + ', '.join(
                f'{k}={config.get(k)}' for k in differ) + ')'
            group = by_label.setdefault(label, RunGroup(label))
            seed = record['seed']
            if seed in group.runs:
                raise ValueError(f'{path} and {group.paths[seed]}: two runs '
                                 f'of {label} with seed {seed}')
            group.runs[seed], group.paths[seed] = record, path
        groups += list(by_label.values())
    return groups


def _protocol(record: Dict[str, Any]) -> Dict[str, Any]:
    # What two runs must share to be compared.
    dataset = record['dataset']
    # The ranking mode and its sampling (not the metrics or cut-offs;
    # results from before the mode was recorded ranked fully).
    evaluation = {'mode': 'full', **{
        k: v for k, v in (record.get('evaluation') or {}).items()
        if k not in ('ks', 'metrics')}}
    return {'dataset fingerprint': dataset.get('fingerprint'),
            'split': dataset.get('split'), 'evaluation': evaluation}


def _mean_std(values: List[float]) -> Dict[str, Optional[float]]:
    return {'mean': statistics.mean(values) if values else None,
            'std': statistics.stdev(values) if len(values) > 1 else None,
            'n': len(values)}


def compare_runs(groups: Sequence[RunGroup],
                 metrics: Sequence[str] = ('recall@20', 'ndcg@20'),
                 baseline: Optional[str] = None, split: str = 'test'
                 ) -> Dict[str, Any]:
    r"""The comparison :obj:`diffkg-pyg compare` prints.

    Args:
        groups (list of RunGroup): From :func:`group_runs`.
        metrics (list of str): The metrics (the first chooses the default
            baseline). (default: Recall@20, NDCG@20)
        baseline (str, optional): The label of the group the others are
            tested against. (default: the best mean of the first metric)
        split (str, optional): :obj:`'test'` or :obj:`'valid'`.

    Returns:
        A record: :obj:`'groups'` (label, seeds, mean/std/n per metric),
        :obj:`'baseline'`, :obj:`'tests'` (per other group and metric: the
        common seeds, the mean difference group - baseline, the paired
        t-test's :obj:`t` and :obj:`p_t`, the Wilcoxon test's :obj:`w` and
        :obj:`p_w`; :obj:`None` where fewer than 2 seeds are common, or
        all differences are 0 for Wilcoxon) and :obj:`'not_comparable'`
        (lines naming the groups whose runs differ in what the comparison
        needs shared).
    """
    from scipy import stats

    labels = [g.label for g in groups]
    if baseline is None:
        baseline = max(groups, key=lambda g: _mean_std(list(
            g.values(split, metrics[0]).values()))['mean'] or -1).label
    elif baseline not in labels:
        raise ValueError(f'--baseline {baseline}: not a group; the groups '
                         f'are {", ".join(labels)}')
    base = groups[labels.index(baseline)]
    out: Dict[str, Any] = {'split': split, 'metrics': list(metrics),
                           'baseline': baseline, 'groups': [], 'tests': []}
    for group in groups:
        out['groups'].append({
            'label': group.label, 'seeds': sorted(group.runs),
            **{m: _mean_std(list(group.values(split, m).values()))
               for m in metrics}})
        if group is base:
            continue
        for metric in metrics:
            mine, theirs = group.values(split, metric), base.values(split,
                                                                    metric)
            seeds = sorted(set(mine) & set(theirs))
            row = {'label': group.label, 'metric': metric, 'seeds': seeds,
                   'diff': None, 't': None, 'p_t': None, 'w': None,
                   'p_w': None}
            if len(seeds) >= 2:
                a = [mine[s] for s in seeds]
                b = [theirs[s] for s in seeds]
                diffs = [x - y for x, y in zip(a, b)]
                row['diff'] = statistics.mean(diffs)
                if any(diffs) and len(set(diffs)) > 1:
                    t = stats.ttest_rel(a, b)
                    row['t'], row['p_t'] = float(t.statistic), float(t.pvalue)
                if any(diffs):
                    w = stats.wilcoxon(a, b)
                    row['w'], row['p_w'] = float(w.statistic), float(w.pvalue)
            out['tests'].append(row)
    out['not_comparable'] = _not_comparable(groups)
    return out


def _not_comparable(groups: Sequence[RunGroup]) -> List[str]:
    seen: Dict[str, Tuple[str, Any]] = {}
    lines = []
    for group in groups:
        for seed, record in sorted(group.runs.items()):
            for key, value in _protocol(record).items():
                if key not in seen:
                    seen[key] = (f'{group.label} seed {seed}', value)
                elif seen[key][1] != value:
                    lines.append(f'{group.label} seed {seed} and '
                                 f'{seen[key][0]} differ in {key}')
                    break
    return lines


def _cell(stat: Dict[str, Optional[float]]) -> str:
    if stat['mean'] is None:
        return ''
    spread = f' ± {stat["std"]:.4f}' if stat['std'] is not None else ''
    return f'{stat["mean"]:.4f}{spread}'


def _number(value: Optional[float], spec: str = '.3f') -> str:
    return 'n/a' if value is None else format(value, spec)


def format_comparison(out: Dict[str, Any]) -> str:
    r"""The comparison of :func:`compare_runs` as two Markdown tables (the
    groups; the tests against the baseline) and the lines saying what is
    not comparable."""
    metrics, split = out['metrics'], out['split']
    lines = ['| model | ' + ' | '.join(f'{split} {m}' for m in metrics) +
             ' | seeds |',
             '|---|' + '---:|' * len(metrics) + '---:|']
    for group in out['groups']:
        lines.append(f'| {group["label"]} | ' + ' | '.join(
            _cell(group[m]) for m in metrics) + f' | {len(group["seeds"])} |')
    if out['tests']:
        lines += ['', f'Against {out["baseline"]}, paired by seed '
                  '(two-sided tests):', '',
                  '| model | metric | seeds | mean difference | paired t | '
                  'p | Wilcoxon W | p |',
                  '|---|---|---:|---:|---:|---:|---:|---:|']
        for row in out['tests']:
            diff = ('n/a' if row['diff'] is None else
                    f'{row["diff"]:+.4f}')
            lines.append(
                f'| {row["label"]} | {row["metric"]} | {len(row["seeds"])} '
                f'| {diff} | {_number(row["t"])} | '
                f'{_number(row["p_t"], ".3g")} | {_number(row["w"], ".1f")} '
                f'| {_number(row["p_w"], ".3g")} |')
    for line in out['not_comparable']:
        lines.append(f'not comparable: {line}')
    return '\n'.join(lines)


def plot_curves(groups: Sequence[RunGroup], path: str,
                metric: str = 'recall@20') -> None:
    r"""Draws every run's validation :obj:`metric` by epoch (from its
    history), one colour per group, to the image :obj:`path` (needs
    matplotlib: the ``plots`` extra)."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("--plot needs matplotlib: pip install "
                         "'diffkg-pyg[plots]'") from None
    from diffkg_pyg.files import atomic_write

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for index, group in enumerate(groups):
        colour = f'C{index % 10}'
        for n, (_, record) in enumerate(sorted(group.runs.items())):
            points = [(h['epoch'], h[f'valid_{metric}'])
                      for h in record.get('history') or []
                      if f'valid_{metric}' in h]
            if points:
                axes.plot(*zip(*points), color=colour, alpha=0.8, lw=1,
                          label=group.label if n == 0 else None)
    axes.set_xlabel('epoch')
    axes.set_ylabel(f'validation {metric}')
    axes.legend(fontsize='small')
    figure.tight_layout()
    extension = osp.splitext(path)[1].lstrip('.') or 'png'
    atomic_write(path, lambda p: figure.savefig(p, format=extension))
    plt.close(figure)
