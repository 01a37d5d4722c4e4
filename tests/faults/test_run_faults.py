r"""Faults of a run: outputs that cannot be written, signals, a shared
checkpoint folder, a diverging loss, interruptions of a search; nothing
is lost and every failure is one line."""
import os
import signal
import subprocess
import sys
import time

import pytest

from diffkg_pyg.train import Trainer
from tests.faults.common import QUICK, ROOT, cli, dataset, one_line


def test_outputs_are_probed_before_training(tmp_path, capsys):
    data = dataset(tmp_path)
    (tmp_path / 'a-file').write_text('')
    for flag, path, message in (
            ('--output', tmp_path, 'is a folder'),
            ('--save-model', tmp_path / 'a-file' / 'm.pt', 'cannot be '
             'written'),
            ('--checkpoint-dir', tmp_path / 'a-file', 'is a file, not a '
             'folder')):
        code, out, err = cli(capsys, data, *QUICK, flag, path)
        assert code == 2 and message in one_line(err), err
        assert 'epoch' not in out  # Before the first epoch.


def test_a_failing_saved_model_keeps_the_result(tmp_path, capsys,
                                               monkeypatch):
    def fail(self, path):
        raise OSError(28, 'No space left on device', path)
    monkeypatch.setattr(Trainer, 'save_model', fail)
    output = tmp_path / 'r.json'
    code, _, err = cli(capsys, dataset(tmp_path), *QUICK, '--output',
                       output, '--save-model', tmp_path / 'm.pt')
    assert code == 2 and 'm.pt: no space left on device' in one_line(err)
    assert output.exists()  # Written first.


def test_full_disk_for_a_checkpoint_is_said_before_training(
        tmp_path, capsys, monkeypatch):
    import collections

    from diffkg_pyg.train import preflight
    usage = collections.namedtuple('usage', 'total used free')
    monkeypatch.setattr(preflight.shutil, 'disk_usage',
                        lambda path: usage(1, 1, 10))
    code, out, err = cli(capsys, dataset(tmp_path), *QUICK,
                         '--checkpoint-dir', tmp_path / 'ckpt')
    assert code == 2 and 'no space left on device' in one_line(err)
    assert 'epoch' not in out


def test_sigterm_checkpoints_and_stops(tmp_path):
    # What schedulers and torchrun send: handled as Ctrl-C.
    data = dataset(tmp_path)
    ckpt, output = tmp_path / 'ckpt', tmp_path / 'r.json'
    process = subprocess.Popen(
        [sys.executable, '-m', 'diffkg_pyg', data, '--model', 'lightgcn',
         '--epochs', '100000', '--patience', '100000', '--checkpoint-dir',
         str(ckpt), '--output', str(output)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, 'PYTHONPATH': ROOT})
    deadline = time.monotonic() + 120
    while not (ckpt / 'last.pt').exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert 'SIGTERM: finishing this epoch' in out + err
    assert f'continue with --resume {ckpt / "last.pt"}' in err
    assert 'Traceback' not in err


def test_a_checkpoint_folder_is_one_run_s(tmp_path, capsys):
    from diffkg_pyg.files import file_lock
    data, ckpt = dataset(tmp_path), tmp_path / 'ckpt'
    ckpt.mkdir()
    orphan = ckpt / 'last.pt.tmp999999999'  # Of a process long gone.
    orphan.write_bytes(b'half')
    with file_lock(str(ckpt / '.lock'), wait=False) as held:
        assert held  # Another run holds the folder.
        code, _, err = cli(capsys, data, *QUICK, '--checkpoint-dir', ckpt)
        assert code == 2 and 'another run is writing' in one_line(err)
    assert cli(capsys, data, *QUICK, '--checkpoint-dir', ckpt)[0] == 0
    assert not orphan.exists() and (ckpt / 'last.pt').exists()


def test_a_diverging_loss_stops_with_its_name(tmp_path, capsys):
    data, ckpt = dataset(tmp_path), tmp_path / 'ckpt'
    argv = [data, '--model', 'mf', '--lr', '1000', '--epochs', '5',
            '--patience', '5']
    code, _, err = cli(capsys, *argv, '--checkpoint-dir', ckpt)
    line = one_line(err)
    assert code == 2 and "the training loss 'loss' diverged in epoch 2" \
        in line
    import torch
    assert torch.load(ckpt / 'last.pt', weights_only=True)[
        'fit_state']['epoch'] == 1  # The last good epoch kept.
    assert cli(capsys, *argv, '--no-divergence-guard')[0] == 0


def test_tune_interrupted_hints_at_rerunning_and_leaves_no_file(
        tmp_path, capsys, monkeypatch):
    pytest.importorskip('optuna')
    original = Trainer.train_epoch

    def interrupted(self, epoch):
        self._interrupt(signal.SIGINT, None)  # Ctrl-C during the epoch.
        return original(self, epoch)
    monkeypatch.setattr(Trainer, 'train_epoch', interrupted)
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, 'tune', dataset(tmp_path), '--model', 'mf',
                       '--trials', 2, '--epochs', 2, '--output',
                       tmp_path / 'study')
    assert code == 130
    assert 'run the same command again to continue it' in err
    assert '--resume' not in err
    assert not (tmp_path / 'diffkg-interrupted.pt').exists()


def test_a_second_interrupt_stops_at_once_in_one_line(tmp_path, capsys,
                                                      monkeypatch):
    def twice(self, epoch):
        self._interrupt(signal.SIGINT, None)
        self._interrupt(signal.SIGINT, None)
    monkeypatch.setattr(Trainer, 'train_epoch', twice)
    code, _, err = cli(capsys, dataset(tmp_path), *QUICK)
    assert code == 130 and 'stopped at once' in err
    assert 'Traceback' not in err
