import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from diffkg_pyg import DiffKG
from diffkg_pyg.checkpoint import (
    fingerprint,
    load_checkpoint,
    rng_state,
    save_atomic,
    set_rng_state,
)
from diffkg_pyg.data import synthetic_dataset
from diffkg_pyg.training import DiffKGTrainer, NonFiniteLossError

SMALL = ['--denoiser-hidden', '32', '--embedding-dim', '16', '--threads',
         '1', '--no-compile', '--seed', '0']


def small_data(**kwargs):
    return synthetic_dataset(num_users=60, num_items=80, num_clusters=4,
                             attributes_per_cluster=4, **kwargs)


def make_trainer(data, tmp_path, **kwargs):
    torch.manual_seed(0)
    model = DiffKG.from_data(data, embedding_dim=8, denoiser_hidden=16,
                             use_compile=False,
                             **kwargs.pop('model', {}))
    return DiffKGTrainer(model, data, batch_size=32, max_batches=2,
                         checkpoint_dir=str(tmp_path), **kwargs)


def train_command(directory, epochs, *extra):
    return [sys.executable, '-m', 'diffkg_pyg', 'train', 'synthetic',
            '--epochs', str(epochs), '--patience', str(epochs),
            '--checkpoint-dir', str(directory),
            '--output', str(directory / 'result.json'), *SMALL, *extra]


def checkpoint_epoch(path):
    if not path.exists():
        return 0
    return load_checkpoint(str(path))['fit_state']['epoch']


def wait_for_epoch(process, path, epoch, timeout=300):
    start = time.monotonic()
    while checkpoint_epoch(path) < epoch:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() - start < timeout
        time.sleep(0.02)


def test_save_atomic_never_leaves_a_partial_file(tmp_path, monkeypatch):
    path = tmp_path / 'state.pt'
    save_atomic({'value': torch.arange(3)}, str(path))

    def broken_save(obj, f):
        f.write(b'half a file')
        raise OSError('disk full')

    monkeypatch.setattr(torch, 'save', broken_save)
    with pytest.raises(OSError, match='disk full'):
        save_atomic({'value': torch.arange(5)}, str(path))
    assert torch.equal(load_checkpoint(str(path))['value'], torch.arange(3))
    assert os.listdir(tmp_path) == ['state.pt']


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='no such checkpoint'):
        load_checkpoint(str(tmp_path / 'missing.pt'))
    (tmp_path / 'junk.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match='not a readable checkpoint'):
        load_checkpoint(str(tmp_path / 'junk.pt'))


def test_rng_state_round_trip():
    import random

    import numpy as np
    generator = torch.Generator().manual_seed(5)
    state = rng_state(generator)
    first = (torch.rand(3), np.random.rand(3), random.random(),
             torch.rand(3, generator=generator))
    set_rng_state(state, generator)
    second = (torch.rand(3), np.random.rand(3), random.random(),
              torch.rand(3, generator=generator))
    assert torch.equal(first[0], second[0]) and torch.equal(first[3],
                                                            second[3])
    assert (first[1] == second[1]).all() and first[2] == second[2]


def test_fingerprint_tells_datasets_apart():
    assert fingerprint(small_data()) == fingerprint(small_data())
    assert fingerprint(small_data()) != fingerprint(small_data(seed=1))


def test_exact_resume_after_sigkill(tmp_path):
    straight, killed = tmp_path / 'straight', tmp_path / 'killed'
    subprocess.run(train_command(straight, 4), check=True,
                   capture_output=True, timeout=600)

    process = subprocess.Popen(train_command(killed, 4),
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for_epoch(process, killed / 'last.pt', 2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    resumed_from = checkpoint_epoch(killed / 'last.pt')
    assert 2 <= resumed_from < 4  # Killed before the run could finish.
    assert not (killed / 'result.json').exists()

    subprocess.run(train_command(killed, 4, '--resume',
                                 str(killed / 'last.pt')),
                   check=True, capture_output=True, timeout=600)
    import json
    results = [json.loads((d / 'result.json').read_text())
               for d in (straight, killed)]
    assert results[1]['epochs_run'] == 4
    for split in ('valid', 'test'):
        for key, value in results[0][split].items():
            assert results[1][split][key] == pytest.approx(value, abs=1e-6)
    losses = [[r['loss'] for r in result['history']] for result in results]
    assert losses[1] == pytest.approx(losses[0], abs=1e-6)
    states = [load_checkpoint(str(d / 'last.pt'))['model']
              for d in (straight, killed)]
    for key, value in states[0].items():
        assert torch.allclose(states[1][key], value, atol=1e-6), key


def test_sigint_saves_a_checkpoint_and_exits(tmp_path):
    process = subprocess.Popen(train_command(tmp_path, 200),
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    wait_for_epoch(process, tmp_path / 'last.pt', 1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130
    assert 'interrupted after epoch' in err and '--resume' in err
    assert 'Traceback' not in err
    epoch = checkpoint_epoch(tmp_path / 'last.pt')
    assert f'interrupted after epoch {epoch}:' in err


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path):
    data = small_data()
    trainer = make_trainer(data, tmp_path)
    trainer.fit(1, log=lambda line: None)
    before = (tmp_path / 'last.pt').read_bytes()
    original = trainer.model.loss

    def diverged(*args, **kwargs):
        loss, terms = original(*args, **kwargs)
        return loss * float('nan'), {**terms, 'bpr': terms['bpr'] * float(
            'nan')}

    trainer.model.loss = diverged
    with pytest.raises(NonFiniteLossError,
                       match='the bpr loss is nan in epoch 2'):
        trainer.fit(3, log=lambda line: None,
                    resume=str(tmp_path / 'last.pt'))
    assert (tmp_path / 'last.pt').read_bytes() == before


@pytest.mark.parametrize('change,match', [
    (dict(model=dict(keep_rate=0.3)), r'keep_rate=0.5 \(given 0.3\)'),
    (dict(lr=1e-2), r'lr=0.001 \(given 0.01\)'),
    (dict(data=dict(seed=1)), 'written for other data'),
])
def test_resume_rejects_other_settings(tmp_path, change, match):
    make_trainer(small_data(), tmp_path).fit(1, log=lambda line: None)
    data = small_data(**change.pop('data', {}))
    trainer = make_trainer(data, tmp_path / 'other', **change)
    with pytest.raises(ValueError, match=match):
        trainer.fit(2, resume=str(tmp_path / 'last.pt'))


def test_best_checkpoint_and_saved_model(tmp_path):
    data = small_data()
    trainer = make_trainer(data, tmp_path)
    result = trainer.fit(3, log=lambda line: None)
    best = load_checkpoint(str(tmp_path / 'best.pt'))
    assert best['fit_state']['epoch'] == result.best_epoch

    trainer.save_model(str(tmp_path / 'model.pt'))
    del data  # Loading needs nothing but the file:
    model, graph = DiffKG.load(str(tmp_path / 'model.pt'))
    users = torch.tensor([0, 7, 59])
    loaded = model.recommend(*graph, users, k=10)
    trainer.model.eval()
    main_kg, _ = trainer.model.views(trainer.sampled_kg,
                                     trainer.denoised_kg)
    in_memory = trainer.model.recommend(trainer.adj, *main_kg, users, k=10)
    assert torch.equal(loaded[0], in_memory[0])
    assert torch.allclose(loaded[1], in_memory[1], atol=1e-6)


def test_load_rejects_other_files(tmp_path):
    save_atomic({'format': 'something else'}, str(tmp_path / 'x.pt'))
    with pytest.raises(ValueError, match='not a model saved by DiffKG'):
        DiffKG.load(str(tmp_path / 'x.pt'))
