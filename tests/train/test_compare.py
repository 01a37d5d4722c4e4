r"""``diffkg-pyg compare``: the committed lastfm-hetrec2011 results give
BENCHMARKS' tables and paired test again; groups, tests and the
not-comparable lines on small hand-made records."""
import glob
import json
import math
import os.path as osp
import re
import statistics

import pytest

from diffkg_pyg.cli import main
from diffkg_pyg.train.compare import (
    compare_runs,
    format_comparison,
    group_runs,
    read_results,
)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RESULTS = osp.join(ROOT, 'benchmarks', 'results')
with open(osp.join(ROOT, 'BENCHMARKS.md'), encoding='utf-8') as f:
    BENCHMARKS = f.read()


def test_the_kg_peer_table_of_benchmarks(capsys):
    # Section 1e's package-protocol table, lastfm-hetrec2011 rows.
    files = sorted(glob.glob(osp.join(
        RESULTS, 'kg-peers-protocol', 'lastfm-hetrec2011-*-kg-s*.json')))
    assert main(['compare', *files]) == 0
    printed = capsys.readouterr().out
    rows = re.findall(r'^\| lastfm-hetrec2011 \| (\w+) \| ([\d.]+ ± [\d.]+)'
                      r' \| ([\d.]+ ± [\d.]+) \| [^|]+\| [^|]+\| 3 \|$',
                      BENCHMARKS, re.M)
    assert len(rows) == 6
    for model, recall, ndcg in rows:
        assert f'| {model} | {recall} | {ndcg} | 3 |' in printed
    assert 'Against kgcl' in printed and 'not comparable' not in printed


def test_the_tuned_paired_test_of_benchmarks(capsys):
    folders = sorted(glob.glob(osp.join(RESULTS, 'tuned-30',
                                        'lastfm-hetrec2011-*', 'final')))
    assert len(folders) == 7
    assert main(['compare', *folders, '--metrics', 'recall@20']) == 0
    printed = capsys.readouterr().out
    t, p = re.search(r'paired t-test gives t = (-?[\d.]+), p = ([\d.]+) '
                     r'for DiffKG', BENCHMARKS).groups()
    row = next(r for r in printed.splitlines() if r.startswith('| diffkg |')
               and 'recall@20' in r)
    cells = [c.strip() for c in row.split('|')]
    assert cells[5] == t and round(float(cells[6]), 2) == float(p)
    assert '| kgcl | 0.3630 ± 0.0019 | 5 |' in printed


def record(model, seed, recall, fingerprint='a', **hyperparameters):
    return {'model': model, 'seed': seed, 'test': {'recall@20': recall},
            'dataset': {'name': 'd', 'fingerprint': fingerprint},
            'hyperparameters': hyperparameters,
            'settings': {'lr': 0.01, 'seed': seed},
            'history': [{'epoch': 1, 'valid_recall@20': recall / 2},
                        {'epoch': 2, 'valid_recall@20': recall}]}


def write_records(folder, records):
    folder.mkdir(exist_ok=True)
    for i, r in enumerate(records):
        (folder / f'{i}.json').write_text(json.dumps(r))
    return str(folder)


A = [0.30, 0.32, 0.35, 0.31, 0.33]
B = [0.29, 0.335, 0.30, 0.27, 0.31]  # |differences| all distinct


def test_tests_are_the_textbook_ones(tmp_path):
    folder = write_records(tmp_path / 'r', [
        *(record('a', s, v) for s, v in enumerate(A)),
        *(record('b', s, v) for s, v in enumerate(B))])
    out = compare_runs(group_runs(read_results([folder])), ['recall@20'])
    assert out['baseline'] == 'a'
    (row,) = out['tests']
    d = [b - a for a, b in zip(A, B)]
    t = statistics.mean(d) / (statistics.stdev(d) / math.sqrt(len(d)))
    assert row['t'] == pytest.approx(t) and row['diff'] == pytest.approx(
        statistics.mean(d))
    # Wilcoxon's W: the smaller sum of the ranks of |d| by sign.
    ranks = {x: r for r, x in enumerate(sorted(map(abs, d)), 1)}
    w = min(sum(ranks[abs(x)] for x in d if x > 0),
            sum(ranks[abs(x)] for x in d if x < 0))
    assert row['w'] == w and 0 < row['p_w'] <= 1 and 0 < row['p_t'] < 1
    group = out['groups'][0]['recall@20']
    assert group['mean'] == pytest.approx(statistics.mean(A)) and \
        group['std'] == pytest.approx(statistics.stdev(A))


def test_groups_by_configuration_and_says_what_is_not_comparable(tmp_path):
    folder = write_records(tmp_path / 'r', [
        record('a', 0, 0.3, dim=32), record('a', 1, 0.3, dim=32),
        record('a', 0, 0.4, dim=64), record('b', 0, 0.2, fingerprint='b'),
        {'not': 'a result'}])  # Skipped inside a folder.
    groups = group_runs(read_results([folder]))
    assert [g.label for g in groups] == ['a (dim=32)', 'a (dim=64)', 'b']
    out = compare_runs(groups, ['recall@20'], baseline='a (dim=32)')
    text = format_comparison(out)
    assert 'not comparable: b seed 0 and a (dim=32) seed 0 differ in ' \
        'dataset fingerprint' in text
    # One seed in common: no test, said as n/a.
    assert all(r['t'] is None for r in out['tests']) and 'n/a' in text


def test_the_curves_are_drawn(tmp_path, capsys):
    folder = write_records(tmp_path / 'r', [record('a', 0, 0.3),
                                            record('b', 0, 0.2)])
    out = tmp_path / 'c.png'
    assert main(['compare', folder, '--plot', str(out),
                 '--output', str(tmp_path / 'c.json')]) == 0
    assert out.read_bytes()[:4] == b'\x89PNG'
    assert json.loads((tmp_path / 'c.json').read_text())['baseline'] == 'a'


@pytest.mark.parametrize('argv, message', [
    (['{r}/0.json', '{r}/0.json'], 'two runs of a with seed 0'),
    (['{tmp}/study.json'], 'not a result of `diffkg-pyg train --output`'),
    (['{tmp}/nope'], 'no such file or folder'),
    (['{r}', '--baseline', 'z'], '--baseline z: not a group'),
    (['{r}', '--metrics', 'mrr@5'], 'no run has mrr@5'),
    (['{tmp}/empty'], 'no result files'),
])
def test_bad_input_is_one_line(tmp_path, capsys, argv, message):
    folder = write_records(tmp_path / 'r', [record('a', 0, 0.3)])
    (tmp_path / 'study.json').write_text('{"study": "x"}')
    (tmp_path / 'empty').mkdir()
    argv = [a.format(r=folder, tmp=tmp_path) for a in argv]
    assert main(['compare', *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith('diffkg-pyg: error: ') and message in err, err
    assert err.count('\n') == 1


def test_sampled_ranking_is_recorded_and_never_compared_with_full(
        tmp_path, capsys):
    paths = {}
    for mode, flags in (('full', []), ('sampled', ['--eval-negatives',
                                                    '20'])):
        paths[mode] = str(tmp_path / f'{mode}.json')
        assert main(['train', 'synthetic', '--model', 'mf', '--epochs', '1',
                     '--threads', '1', '--output', paths[mode]] + flags) == 0
    assert 'sampled ranking: not comparable with full ranking' in \
        capsys.readouterr().out
    evaluation = json.loads(open(paths['sampled']).read())['evaluation']
    assert evaluation == {'mode': 'sampled', 'ks': [10, 20, 40],
                          'metrics': ['recall', 'ndcg'], 'negatives': 20,
                          'sampler': 'uniform', 'negative_seed': 0}
    assert main(['compare', paths['full'], paths['sampled'], '--baseline',
                 'mf (evaluation=full)']) == 0
    assert 'not comparable: mf (evaluation=sampled 20 uniform) seed 0 and ' \
        'mf (evaluation=full) seed 0 differ in evaluation' in \
        capsys.readouterr().out
