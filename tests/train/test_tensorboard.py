r"""``train --log-dir``: every epoch's record as TensorBoard scalars, the
best epoch's test metrics, a resumed run's curves without a repeated
epoch, and one error line without the package."""
import builtins
import json
import shutil

import pytest

from diffkg_pyg.cli import main

event_accumulator = pytest.importorskip(
    'tensorboard.backend.event_processing.event_accumulator')


def scalars(log_dir):
    acc = event_accumulator.EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
            for tag in acc.Tags()['scalars']}


def train(tmp_path, *flags):
    return main(['train', 'synthetic', '--model', 'mf', '--threads', '1',
                 '--log-dir', str(tmp_path / 'tb'), '--patience', '5',
                 *flags])


def test_every_epoch_is_written(tmp_path):
    result = tmp_path / 'r.json'
    assert train(tmp_path, '--epochs', '3', '--output', str(result)) == 0
    record = json.loads(result.read_text())
    got = scalars(tmp_path / 'tb')
    for entry in record['history']:
        for key, value in entry.items():
            if key == 'epoch':
                continue
            tag = ('valid/' + key[6:] if key.startswith('valid_') else
                   'seconds/' + key[:-8] if key.endswith('_seconds') else
                   'train/' + key)
            assert (entry['epoch'], pytest.approx(value)) in got[tag]
    assert got['test/recall@20'] == [(record['best_epoch'], pytest.approx(
        record['test']['recall@20']))]
    assert [s for s, _ in got['train/loss']] == [1, 2, 3]


def test_a_resumed_run_continues_the_curves(tmp_path):
    checkpoints = tmp_path / 'ck'
    assert train(tmp_path, '--epochs', '2', '--checkpoint-dir',
                 str(checkpoints)) == 0
    shutil.copy(checkpoints / 'last.pt', tmp_path / 'epoch2.pt')
    # A run that went on to epoch 3 (and was lost, say), then a resume
    # from epoch 2: epoch 3 is written again, and shown once.
    assert train(tmp_path, '--epochs', '3', '--resume',
                 str(checkpoints / 'last.pt')) == 0
    assert train(tmp_path, '--epochs', '4', '--resume',
                 str(tmp_path / 'epoch2.pt')) == 0
    assert [s for s, _ in scalars(tmp_path / 'tb')['train/loss']] == \
        [1, 2, 3, 4]


def test_without_tensorboard_one_error_line(tmp_path, monkeypatch, capsys):
    real = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name == 'tensorboard':
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, '__import__', refuse)
    assert train(tmp_path, '--epochs', '1') == 2
    assert "needs the tensorboard package: pip install " \
        "'diffkg-pyg[tensorboard]'" in capsys.readouterr().err
