r"""``benchmarks/speed_step.py --floor`` on the synthetic data, for every
(model, phase) with a floor (:mod:`floors`): each prints the measured
record and a floor record whose parts add up to ``floor_s`` and whose
``ratio_to_floor`` is the measured seconds over it, and ``--table
--phases`` prints a row for each."""
import json
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))

import floors  # noqa: E402
import speed_step  # noqa: E402


def run(monkeypatch, capsys, *argv):
    monkeypatch.setattr(sys, 'argv', ['speed_step.py', *argv])
    speed_step.main()
    return capsys.readouterr().out


@pytest.mark.parametrize('model, phase', sorted(floors.FLOORS))
def test_floor_record(model, phase, monkeypatch, capsys, tmp_path):
    output = tmp_path / 'phases.jsonl'
    argv = ['--data', 'synthetic', '--model', model, '--steps', '2',
            '--warmup', '1', '--threads', '1', '--floor', '--no-compile',
            '--output', str(output)]
    if model == 'diffkg':
        argv += ['--phase', phase]
    run(monkeypatch, capsys, *argv)
    with open(output) as f:
        measured, floor = [json.loads(line) for line in f]
    assert (measured['implementation'], floor['implementation']) == \
        ('package', 'floor')
    assert measured['phase'] == floor['phase'] == phase
    assert measured['steps'] >= 2  # Two rounds (the default) of them.
    parts = [v for k, v in floor.items()
             if k.endswith('_s') and k not in ('floor_s', 'measured_s')]
    assert parts and all(v > 0 for v in parts)
    assert floor['floor_s'] == pytest.approx(sum(parts))
    assert floor['measured_s'] == measured['step_s'] > 0
    assert floor['ratio_to_floor'] == pytest.approx(
        measured['step_s'] / floor['floor_s'])
    table = run(monkeypatch, capsys, '--table', str(output), '--phases')
    row = f'| synthetic | {model}: {phase} | '
    assert row + f"{floor['measured_s']:.3f} / {floor['floor_s']:.3f} s" \
        in table


def test_floor_errors(monkeypatch, capsys):
    for argv, message in (
            (['--model', 'lightgcn', '--floor'], 'no floor is written'),
            (['--model', 'kgin', '--phase', 'rebuild'], 'need --model '
             'diffkg'),
            (['--phase', 'diffusion', '--compare'], 'recommendation step')):
        with pytest.raises(SystemExit):
            run(monkeypatch, capsys, '--data', 'synthetic', *argv)
        assert message in capsys.readouterr().err
