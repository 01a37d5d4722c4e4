import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from diffkg_pyg import load_model
from diffkg_pyg.csr import to_csr
from diffkg_pyg.data import KG, USER_ITEM, synthetic_dataset
from diffkg_pyg.train import NonFiniteLossError
from diffkg_pyg.train.checkpoint import (
    fingerprint,
    load_checkpoint,
    rng_state,
    save_atomic,
    set_rng_state,
)
from tests.conftest import flat_state
from tests.train.test_trainer import make_trainer

SMALL = {'diffkg': ['--denoiser-hidden-channels', '32', '--embedding-dim',
                    '16', '--no-compile'],
         'lightgcn': ['--embedding-dim', '16', '--batch-size', '256']}


def small_data(**kwargs):
    return synthetic_dataset(num_users=60, num_items=80, num_clusters=4,
                             attributes_per_cluster=4, **kwargs)


def train_command(directory, epochs, model='diffkg', *extra):
    return [sys.executable, '-m', 'diffkg_pyg', 'train', 'synthetic',
            '--model', model, '--epochs', str(epochs), '--patience',
            str(epochs), '--checkpoint-dir', str(directory), '--output',
            str(directory / 'result.json'), '--threads', '1', '--seed', '0',
            *SMALL[model], *extra]


def checkpoint_epoch(path):
    if not path.exists():
        return 0
    return load_checkpoint(str(path))['fit_state']['epoch']


def wait_for_epoch(process, path, epoch):
    # Waits for the checkpoint file, however long the machine takes (the
    # process ending first fails the test).
    while checkpoint_epoch(path) < epoch:
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)


def test_save_atomic_never_leaves_a_partial_file(tmp_path, monkeypatch):
    path = tmp_path / 'state.pt'
    save_atomic({'value': torch.arange(3)}, str(path))

    def broken_save(obj, path):
        with open(path, 'wb') as f:
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



def test_rng_state_of_another_device_is_one_clear_error():
    generator = torch.Generator().manual_seed(5)
    state = rng_state(generator)
    assert state['generator_device'] == 'cpu'
    # A CPU run does not start CUDA to read its generators:
    assert 'cuda' not in state or torch.cuda.is_initialized()
    state['generator_device'] = 'cuda'
    before = torch.get_rng_state()
    with pytest.raises(ValueError, match='written by a run on cuda, and '
                       'this run is on cpu: resume it with --device cuda'):
        set_rng_state(state, generator)
    assert torch.equal(torch.get_rng_state(), before)  # Nothing was set.
    del state['generator_device']  # Checkpoints of earlier versions.
    set_rng_state(state, generator)

def test_fingerprint_tells_datasets_apart():
    assert fingerprint(small_data()) == fingerprint(small_data())
    assert fingerprint(small_data()) != fingerprint(small_data(seed=1))


@pytest.mark.parametrize('key', ['edge_type', 'edge_time', 'x'])
def test_fingerprint_covers_what_models_read(key):
    # T-DiffRec reads the interactions' order, L-DiffRec the item features,
    # every KG model the relations: a change to any of them is another
    # dataset for a resumed run.
    data = small_data()
    store = {'edge_type': data[KG], 'edge_time': data[USER_ITEM],
             'x': data['item']}[key]
    if key == 'edge_time':
        store.edge_time = torch.arange(store.edge_index.size(1))
    elif key == 'x':
        store.x = torch.arange(2.0 * data['item'].num_nodes).view(-1, 2)
    before = fingerprint(data)
    value = getattr(store, key)
    setattr(store, key, value.flip(0) if key != 'edge_type'
            else (value + 1) % int(data[KG].num_relations))
    assert fingerprint(data) != before


@pytest.mark.slow  # Three training processes.
# The command line's path, killed from outside; every registered model's
# kill and resume is test_every_model's.
@pytest.mark.parametrize('model,epochs', [('diffkg', 4)])
def test_exact_resume_after_sigkill(tmp_path, model, epochs):
    straight, killed = tmp_path / 'straight', tmp_path / 'killed'
    subprocess.run(train_command(straight, epochs, model), check=True,
                   capture_output=True)

    process = subprocess.Popen(train_command(killed, epochs, model),
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for_epoch(process, killed / 'last.pt', 2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    resumed_from = checkpoint_epoch(killed / 'last.pt')
    assert 2 <= resumed_from < epochs  # Killed before the run could finish.
    assert not (killed / 'result.json').exists()

    subprocess.run(train_command(killed, epochs, model, '--resume',
                                 str(killed / 'last.pt')),
                   check=True, capture_output=True)
    import json
    results = [json.loads((d / 'result.json').read_text())
               for d in (straight, killed)]
    assert results[1]['epochs_run'] == epochs
    for split in ('valid', 'test'):
        for key, value in results[0][split].items():
            assert results[1][split][key] == pytest.approx(value, abs=1e-6)
    losses = [[r['loss'] for r in result['history']] for result in results]
    assert losses[1] == pytest.approx(losses[0], abs=1e-6)
    states = [flat_state(load_checkpoint(str(d / 'last.pt'))['model'])
              for d in (straight, killed)]
    for key, value in states[0].items():
        assert torch.allclose(states[1][key], value, atol=1e-6), key


@pytest.mark.slow  # A training process.
def test_sigint_saves_a_checkpoint_and_exits(tmp_path):
    process = subprocess.Popen(train_command(tmp_path, 200),
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    wait_for_epoch(process, tmp_path / 'last.pt', 1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate()
    assert process.returncode == 130
    assert 'interrupted after epoch' in err and '--resume' in err
    assert 'Traceback' not in err
    epoch = checkpoint_epoch(tmp_path / 'last.pt')
    assert f'interrupted after epoch {epoch}:' in err


@pytest.mark.parametrize('name', ['diffkg', 'lightgcn'])
def test_non_finite_loss_keeps_last_checkpoint(tmp_path, name):
    trainer = make_trainer(name, checkpoint_dir=str(tmp_path))
    trainer.fit(1)
    before = (tmp_path / 'last.pt').read_bytes()
    trainer = make_trainer(name, checkpoint_dir=str(tmp_path))
    step = trainer.context.step

    def diverged(optimizers, loss, name='loss', **terms):
        step(optimizers, loss * float('nan'), name, **terms)

    trainer.context.step = diverged
    with pytest.raises(NonFiniteLossError,
                       match="(training loss|loss term) '.*' is nan in "
                       'epoch 2'):
        trainer.fit(3, resume=str(tmp_path / 'last.pt'))
    assert (tmp_path / 'last.pt').read_bytes() == before


@pytest.mark.parametrize('change,match', [
    (dict(model=dict(keep_rate=0.3)), r'keep_rate=0.5 \(given 0.3\)'),
    (dict(lr=1e-2), r'lr=0.001 \(given 0.01\)'),
    (dict(data=dict(seed=1)), 'written for other data'),
    (dict(name='lightgcn'), "of model 'diffkg', not 'lightgcn'"),
])
def test_resume_rejects_other_settings(tmp_path, change, match):
    make_trainer('diffkg', checkpoint_dir=str(tmp_path)).fit(1)
    data = synthetic_dataset(num_users=60, num_items=80, num_clusters=4,
                             attributes_per_cluster=4,
                             **change.pop('data', {}))
    trainer = make_trainer(change.pop('name', 'diffkg'), data,
                           checkpoint_dir=str(tmp_path / 'other'), **change)
    with pytest.raises(ValueError, match=match):
        trainer.fit(2, resume=str(tmp_path / 'last.pt'))


def test_resume_ignores_use_compile(tmp_path):
    # use_compile is not compared: a checkpoint of an eager run resumes
    # compiled, with the checkpoint's state and the new run's flag.
    make_trainer('diffkg', checkpoint_dir=str(tmp_path)).fit(1)
    path = str(tmp_path / 'last.pt')
    trainer = make_trainer('diffkg', model=dict(use_compile=True))
    state = trainer.checkpointer.load(path)
    assert state.epoch == 1
    saved = load_checkpoint(path)
    assert saved['hyperparameters']['use_compile'] is False
    assert trainer.recipe.hparams['use_compile'] is True
    for key, value in trainer.model.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, saved['model'][key]), key


@pytest.mark.parametrize('name', ['diffkg', 'lightgcn'])
def test_best_checkpoint_and_saved_model(tmp_path, name):
    trainer = make_trainer(name, checkpoint_dir=str(tmp_path))
    result = trainer.fit(3)
    best = load_checkpoint(str(tmp_path / 'best.pt'))
    assert best['fit_state']['epoch'] == result.best_epoch

    trainer.save_model(str(tmp_path / 'model.pt'))
    saved = torch.load(str(tmp_path / 'model.pt'), weights_only=True)
    assert all(v.device.type == 'cpu' for v in saved['state_dict'].values()
               if isinstance(v, torch.Tensor))
    assert not any(k.startswith('denoiser.') for k in saved['state_dict'])
    recommender = load_model(str(tmp_path / 'model.pt'))  # No data needed.
    assert repr(recommender) == (f'Recommender({name}, num_users=60, '
                                 f'num_items=80)')
    users = torch.tensor([0, 7, 59])
    items, scores = recommender.recommend(users, k=10)
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.recipe.scores(trainer.model)(users)
    assert torch.allclose(recommender.scores(users), expected, atol=1e-6)
    # Train items are never recommended back; the rest is the top-k:
    ptr, col = to_csr(trainer.context.train_edge_index, 60)
    for row, user in enumerate(users.tolist()):
        train = set(col[ptr[user]:ptr[user + 1]].tolist())
        assert not train & set(items[row].tolist())
        expected[row, list(train)] = float('-inf')
    assert torch.allclose(scores, expected.topk(10).values, atol=1e-6)


def test_load_model_rejects_other_files(tmp_path):
    save_atomic({'format': 'something else'}, str(tmp_path / 'x.pt'))
    with pytest.raises(ValueError, match='not a model saved by this'):
        load_model(str(tmp_path / 'x.pt'))


FILES = os.path.join(os.path.dirname(__file__), 'files')


def stateful_data():
    # The data the files of the stateful DiffKG were written with (at
    # 316ff11, when the model held its KGs).
    return synthetic_dataset(num_users=20, num_items=30, num_clusters=3,
                             attributes_per_cluster=3,
                             interactions_per_user=8, seed=2, val_ratio=0.2)


def test_a_model_saved_when_diffkg_held_its_kgs_loads():
    expected = torch.load(os.path.join(FILES, 'diffkg-stateful-expected.pt'))
    model = load_model(os.path.join(FILES, 'diffkg-stateful-model.pt'))
    assert set(model.recipe.state_dict()) == {'sampled_kg', 'denoised_kg'}
    items, scores = model.recommend(torch.arange(20), k=5)
    assert torch.allclose(scores, expected['scores'], atol=1e-5)
    # The same items, wherever the scores are not tied to that precision:
    clear = torch.ones_like(scores, dtype=torch.bool)
    gaps = (scores[:, :-1] - scores[:, 1:]) < 1e-4
    clear[:, :-1] &= ~gaps
    clear[:, 1:] &= ~gaps
    assert torch.equal(items[clear], expected['items'][clear])


def test_a_checkpoint_written_when_diffkg_held_its_kgs_resumes(tmp_path):
    import shutil
    shutil.copy(os.path.join(FILES, 'diffkg-stateful-last.pt'),
                tmp_path / 'last.pt')  # After epoch 2 of 3.

    def trainer(**kwargs):
        from diffkg_pyg.train import Trainer
        from diffkg_pyg.train.registry import get_recipe
        recipe = get_recipe('diffkg')(embedding_dim=8, use_compile=False,
                                      denoiser_hidden_channels=16)
        return Trainer(recipe, stateful_data(), batch_size=32, seed=0,
                       **kwargs)

    resumed = trainer(checkpoint_dir=str(tmp_path)).fit(
        3, patience=3, resume=str(tmp_path / 'last.pt'))
    fresh = trainer().fit(3, patience=3)
    assert resumed.test == fresh.test
    assert [r['loss'] for r in resumed.history] == \
        [r['loss'] for r in fresh.history]
