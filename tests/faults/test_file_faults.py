r"""Faults of the files a run reads back: saved models and checkpoints,
damaged or edited. Each is loaded in a new interpreter, so that a crash
(a bus error, a segfault, a heap-corruption abort) fails the test instead
of the suite; the outcome must be one :class:`ValueError` naming the
file."""
import errno
import json
import os
from collections import namedtuple

import pytest
import torch

from tests.faults.common import QUICK, cli, dataset, one_line, run_python

shutil_usage = namedtuple('usage', 'total used free')

# Loads every file given and prints one JSON line per file: its outcome.
LOADER = r'''
import json, sys
from diffkg_pyg import load_model
for path in sys.argv[1:]:
    try:
        model = load_model(path)
        model.recommend(__import__('torch').arange(3), k=5)
        print(json.dumps([path, 'loaded', '']))
    except (ValueError, OSError) as error:
        print(json.dumps([path, type(error).__name__, str(error)]))
'''


def _edits():
    def set_user(saved):
        saved['train_edge_index'][0, 5] = saved['sizes']['num_users']

    def negative_item(saved):
        saved['train_edge_index'][1, 0] = -1

    def float_pairs(saved):
        saved['train_edge_index'] = saved['train_edge_index'].float()

    def three_rows(saved):
        pairs = saved['train_edge_index']
        saved['train_edge_index'] = torch.cat([pairs, pairs[:1]])

    def fewer_users(saved):
        saved['sizes']['num_users'] = 3

    def huge_users(saved):
        saved['sizes']['num_users'] = 2**40

    def wrong_shape(saved):
        key = next(iter(saved['state_dict']))
        saved['state_dict'][key] = saved['state_dict'][key][:2]

    def nan_parameter(saved):
        key = next(iter(saved['state_dict']))
        saved['state_dict'][key][0] = float('nan')

    def no_pairs(saved):
        del saved['train_edge_index']

    def bad_kg_state(saved):  # DiffKG's sampled KG, an entity far out.
        saved['recipe']['sampled_kg'][0][0, 0] = 10**9

    return dict(user_beyond_count=set_user, negative_item=negative_item,
                float_pairs=float_pairs, three_rows=three_rows,
                fewer_users=fewer_users, huge_users=huge_users,
                wrong_shape=wrong_shape, nan_parameter=nan_parameter,
                no_pairs=no_pairs, bad_kg_state=bad_kg_state)


@pytest.fixture(scope='module')
def saved_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp('saved')
    data = dataset(folder)
    paths = {}
    for model in ('mf', 'diffkg'):
        path = folder / f'{model}.pt'
        from diffkg_pyg.cli import main
        assert main([data, '--model', model, '--epochs', '1',
                     '--save-model', str(path)] +
                    (['--embedding-dim', '8', '--no-use-compile']
                     if model == 'diffkg' else [])) == 0
        paths[model] = path
    return paths


def test_no_saved_model_crashes_the_interpreter(saved_models, tmp_path):
    files = []
    for model, path in saved_models.items():
        for name, edit in _edits().items():
            if name == 'bad_kg_state' and model != 'diffkg':
                continue
            saved = torch.load(path, weights_only=True)
            edit(saved)
            files.append(tmp_path / f'{model}-{name}.pt')
            torch.save(saved, files[-1])
        truncated = tmp_path / f'{model}-truncated.pt'
        truncated.write_bytes(path.read_bytes()[:1000])
        files.append(truncated)
    files.append(tmp_path / 'a-folder.pt')
    files[-1].mkdir()
    done = run_python(LOADER, *files)
    assert done.returncode == 0, done.stderr[-2000:]
    outcomes = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(outcomes) == len(files)
    for path, outcome, message in outcomes:
        assert outcome == ('IsADirectoryError' if path.endswith('folder.pt')
                           else 'ValueError'), (path, message)
        assert path in message  # Every message names its file.


def test_save_model_refuses_what_would_not_load(tmp_path):
    from diffkg_pyg.train import get_recipe, save_model
    from diffkg_pyg.train.recipe import Sizes
    recipe = get_recipe('mf')()
    sizes = Sizes(4, 5, 5, 0)
    model = recipe.build_model(sizes)
    with pytest.raises(ValueError, match='is not a user id'):
        save_model(str(tmp_path / 'm.pt'), recipe, model, sizes,
                   torch.tensor([[0, 9], [1, 2]]))
    assert not (tmp_path / 'm.pt').exists()


def test_recommend_past_the_unseen_items_and_bad_users(saved_models):
    from diffkg_pyg import load_model
    model = load_model(str(saved_models['mf']))
    items, scores = model.recommend(torch.arange(2), k=30)  # All items.
    for user in range(2):
        train = set(model.train_col[model.train_ptr[user]:
                                    model.train_ptr[user + 1]].tolist())
        listed = items[user][items[user] >= 0].tolist()
        assert not train & set(listed)
        assert len(listed) == 30 - len(train)  # Then -1 at -inf.
        assert (scores[user][items[user] < 0] == float('-inf')).all()
    with pytest.raises(ValueError, match='user_index'):
        model.scores(torch.tensor([-1]))
    with pytest.raises(ValueError, match='integer user ids'):
        model.recommend(torch.tensor([0.5]))


@pytest.mark.parametrize('damage', ['missing_key', 'wrong_shape',
                                    'truncated', 'bad_index'])
def test_damaged_checkpoints_are_one_line(tmp_path, capsys, damage):
    data, ckpt = dataset(tmp_path), tmp_path / 'ckpt'
    assert cli(capsys, data, *QUICK, '--checkpoint-dir', ckpt)[0] == 0
    path = ckpt / 'last.pt'
    if damage == 'truncated':
        path.write_bytes(path.read_bytes()[:2000])
    else:
        saved = torch.load(path, weights_only=True)
        if damage == 'missing_key':
            del saved['optimizers']
        elif damage == 'wrong_shape':
            key = next(iter(saved['model']))
            saved['model'][key] = saved['model'][key][:1]
        else:
            saved['fit_state'] = {'epoch': 'one'}
        torch.save(saved, path)
    code, _, err = cli(capsys, data, *QUICK[:2], '--epochs', '2',
                       '--resume', path)
    assert code == 2 and str(path) in one_line(err)


def test_a_full_disk_names_the_file(tmp_path, monkeypatch):
    # torch.save on a full disk raises "unexpected pos ..."; the package
    # says ENOSPC with the path, and leaves no temporary behind.
    from diffkg_pyg.files import shutil as utils_shutil
    from diffkg_pyg.train import checkpoint

    def full(obj, path):
        open(path, 'wb').write(b'x')
        raise RuntimeError('[enforce fail at inline_container.cc:603] . '
                           'unexpected pos 64 vs 0')
    monkeypatch.setattr(checkpoint.torch, 'save', full)
    monkeypatch.setattr(utils_shutil, 'disk_usage',
                        lambda path: shutil_usage(0, 0, 0))
    with pytest.raises(OSError) as caught:
        checkpoint.save_atomic({'a': 1}, str(tmp_path / 'last.pt'))
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(tmp_path / 'last.pt')
    assert os.listdir(tmp_path) == []
    from diffkg_pyg.train.preflight import describe
    assert describe(caught.value).startswith(
        f'{tmp_path / "last.pt"}: no space left on device')


# Hypothesis over the tensors of a saved model or checkpoint, run in a
# new interpreter: any element, dtype or shape changed, the file loads (or
# resumes) or raises ValueError; nothing else, never a crash.
PROPERTY = r'''
import sys, tempfile, os
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from diffkg_pyg import load_model
from diffkg_pyg.data import load_dataset
from diffkg_pyg.train import NonFiniteLossError, Trainer, get_recipe

kind, base, data_path = sys.argv[1:4]
original = torch.load(base, weights_only=True)
data = load_dataset(data_path, log=False) if kind == 'checkpoint' else None


def tensors(obj, path=()):
    if isinstance(obj, torch.Tensor):
        yield path
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from tensors(v, path + (k, ))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from tensors(v, path + (i, ))


PATHS = [p for p in tensors(original) if p and p[0] != 'rng'
         and p[0] != 'rng_ranks']
VALUES = [-1, -2**40, 2**31, 2**40, 3, float('nan'), float('inf')]


def edit(saved, path, how, value, position):
    parent = saved
    for key in path[:-1]:
        parent = parent[key]
    tensor = parent[path[-1]].contiguous().clone()
    if how == 'value' and tensor.numel():
        flat = tensor.view(-1)
        i = position % flat.numel()
        if tensor.is_floating_point() or not (isinstance(value, float)):
            flat[i] = value if tensor.is_floating_point() else int(
                max(min(value, 2**62), -2**62))
    elif how == 'dtype':
        tensor = tensor.float() if not tensor.is_floating_point() else \
            tensor.long()
    elif how == 'shape' and tensor.dim():
        tensor = tensor[:max(tensor.size(0) - 1 - position % 3, 0)]
    if isinstance(parent, tuple):
        return False
    parent[path[-1]] = tensor
    return True


@settings(max_examples=int(sys.argv[4]), deadline=None,
          suppress_health_check=list(HealthCheck), database=None)
@given(st.sampled_from(PATHS), st.sampled_from(['value', 'dtype', 'shape']),
       st.sampled_from(VALUES), st.integers(0, 10**6))
def check(path, how, value, position):
    saved = torch.load(base, weights_only=True)
    if not edit(saved, path, how, value, position):
        return
    with tempfile.TemporaryDirectory() as folder:
        file = os.path.join(folder, 'edited.pt')
        torch.save(saved, file)
        try:
            if kind == 'model':
                model = load_model(file)
                model.recommend(torch.arange(3), k=5)
            else:
                recipe = get_recipe('lightgcn')(embedding_dim=8)
                trainer = Trainer(recipe, data, batch_size=64,
                                  log=lambda line: None)
                trainer.fit(2, resume=file)
        except (ValueError, NonFiniteLossError):
            pass  # One line at the command line (a diverging state too).


check()
print('ok')
'''


@pytest.mark.parametrize('kind', ['model', 'checkpoint'])
def test_edited_tensors_never_crash(tmp_path, capsys, kind):
    data = dataset(tmp_path)
    if kind == 'model':
        path = tmp_path / 'm.pt'
        assert cli(capsys, data, '--model', 'diffkg', '--epochs', '1',
                   '--embedding-dim', '8', '--no-use-compile',
                   '--save-model', path)[0] == 0
    else:
        assert cli(capsys, data, '--model', 'lightgcn', '--epochs', '1',
                   '--embedding-dim', '8', '--batch-size', '64',
                   '--checkpoint-dir', tmp_path / 'ck')[0] == 0
        path = tmp_path / 'ck' / 'last.pt'
    done = run_python(PROPERTY, kind, path, data, 50, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == 'ok', \
        done.stderr[-3000:]
