r"""Every registered model, each through its recipe's tiny configuration:
training, SIGKILL-and-resume equality, save/load/recommend, its flag and
config-file aliases, and config-file errors. The cases come from the
registry at collection time: a model added to it is tested here without
editing this file (``test_a_registered_model_gets_every_case`` shows it)."""
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from diffkg_pyg import load_model
from diffkg_pyg.cli import build_train_parser, main
from diffkg_pyg.csr import to_csr
from diffkg_pyg.data import USER_ITEM, synthetic_dataset
from diffkg_pyg.train import MODELS, TRAIN_SETTINGS, Trainer, get_recipe
from diffkg_pyg.train.checkpoint import load_checkpoint
from diffkg_pyg.train.flags import given_values
from diffkg_pyg.train.hyperparameters import split_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
NAMES = sorted(MODELS)
SETTINGS = {p.name for p in TRAIN_SETTINGS}


def full_data():
    r"""A tiny graph with every input a layout may carry: a knowledge graph
    and the chronological order of the train pairs (``edge_time``)."""
    data = synthetic_dataset(num_users=60, num_items=80, num_clusters=4,
                             attributes_per_cluster=4)
    store = data[USER_ITEM]
    store.edge_time = torch.randperm(
        store.edge_index.size(1), generator=torch.Generator().manual_seed(0))
    return data


def make_trainer(name, **kwargs):
    tiny = get_recipe(name).tiny
    recipe = get_recipe(name)(**{k: v for k, v in tiny.items()
                                 if k not in SETTINGS})
    settings = {k: v for k, v in tiny.items() if k in SETTINGS}
    return Trainer(recipe, full_data(), ks=(5, 20), log=lambda line: None,
                   **{**settings, **kwargs})


# The run a test process kills itself in: SIGKILL right after the epoch-2
# checkpoints are written, in the middle of the run.
KILLED_RUN = textwrap.dedent('''
    import os, signal, sys
    from diffkg_pyg.train.checkpointer import Checkpointer
    from tests.train.test_every_model import make_trainer
    name, folder = sys.argv[1:]
    write = Checkpointer.on_epoch_end
    def write_and_die(self, state, epochs, interrupted, **kwargs):
        path = write(self, state, epochs, interrupted, **kwargs)
        if state.epoch == 2 and self.directory == folder:
            os.kill(os.getpid(), signal.SIGKILL)
        return path
    Checkpointer.on_epoch_end = write_and_die
    make_trainer(name, checkpoint_dir=folder).fit(4, patience=4)
''')


@pytest.mark.parametrize('name', NAMES)
def test_trains(name):
    result = make_trainer(name).fit(2, patience=2)
    assert 1 <= result.best_epoch <= result.epochs_run == 2
    assert all(0.0 <= v <= 1.0 for v in result.test.values())
    assert set(result.valid) == {'recall@5', 'recall@20', 'ndcg@5',
                                 'ndcg@20'}
    assert all('loss' in record or any(k.endswith('loss') for k in record)
               for record in result.history)


def _losses(result):
    return [{k: v for k, v in record.items() if not k.endswith('_seconds')}
            for record in result.history]


@pytest.mark.parametrize('name', NAMES)
def test_one_seed_draws_one_run(name):
    # Every draw (batches, negatives, views, noise, dropout) comes from the
    # run's seed: two runs with one seed are equal to the last digit, and
    # another seed moves them.
    first = make_trainer(name, seed=5).fit(2, patience=2)
    second = make_trainer(name, seed=5).fit(2, patience=2)
    assert _losses(first) == _losses(second)
    assert first.test == second.test
    other = make_trainer(name, seed=6).fit(2, patience=2)
    assert _losses(other) != _losses(first)


@pytest.mark.parametrize('name', NAMES)
def test_sigkill_and_resume_equal_an_uninterrupted_run(name, tmp_path):
    straight = make_trainer(name)
    expected = straight.fit(4, patience=4)

    folder = str(tmp_path / 'killed')
    process = subprocess.run([sys.executable, '-c', KILLED_RUN, name,
                              folder], cwd=ROOT, capture_output=True,
                             text=True, env={**os.environ,
                                             'OMP_NUM_THREADS': '1'})
    assert process.returncode == -signal.SIGKILL, process.stderr
    last = osp.join(folder, 'last.pt')
    assert load_checkpoint(last)['fit_state']['epoch'] == 2

    resumed = make_trainer(name).fit(4, patience=4, resume=last)
    assert resumed.epochs_run == 4 and \
        resumed.best_epoch == expected.best_epoch
    for split in ('valid', 'test'):
        for key, value in getattr(expected, split).items():
            assert getattr(resumed, split)[key] == pytest.approx(value,
                                                                 abs=1e-6)
    for mine, theirs in zip(resumed.history, expected.history):
        for key, value in theirs.items():
            if not key.endswith('_seconds'):
                assert mine[key] == pytest.approx(value, abs=1e-6), key


@pytest.mark.parametrize('name', NAMES)
def test_save_load_recommend(name, tmp_path):
    trainer = make_trainer(name)
    trainer.fit(2, patience=2)
    path = str(tmp_path / 'model.pt')
    trainer.save_model(path)
    recommender = load_model(path)  # No data needed.
    users = torch.tensor([0, 7, 59])
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.recipe.scores(trainer.model)(users)
    assert torch.allclose(recommender.scores(users), expected, atol=1e-5)
    items, _ = recommender.recommend(users, k=10)
    ptr, col = to_csr(trainer.context.train_edge_index, 60)
    for row, user in enumerate(users.tolist()):
        train = set(col[ptr[user]:ptr[user + 1]].tolist())
        assert not train & set(items[row].tolist())


def _aliases(name):
    # (parameter, alias, value) for every alias taking the parameter's own
    # values, with a non-default value where one is declared.
    out = []
    recipe = get_recipe(name)
    for parameter in recipe.hyperparameters + recipe.training_settings():
        if parameter.from_alias is not None or parameter.default is None:
            continue
        value = parameter.default
        if parameter.choices:
            value = parameter.choices[-1]
        elif parameter.space is not None and parameter.space.choices:
            value = parameter.space.choices[-1]
        for alias in parameter.aliases:
            out.append((parameter, alias, value))
    return out


@pytest.mark.parametrize('name', NAMES)
def test_aliases_round_trip(name, tmp_path):
    recipe_class = get_recipe(name)
    for parameter, alias, value in _aliases(name):
        text = ('[' + ','.join(map(str, value)) + ']'
                if isinstance(value, tuple) else str(value))
        args, unknown = build_train_parser(recipe_class).parse_known_args(
            [f'--{alias}', text])
        assert not unknown
        prefix = 'setting' if parameter.name in SETTINGS else 'model'
        given = given_values(args, prefix, [parameter])  # Its aliases too.
        assert given == {parameter.name: value}, alias
        config = {alias: list(value) if isinstance(value, tuple) else value}
        settings, model = split_config(config, 'run.toml', recipe_class)
        assert {**settings, **model} == {parameter.name: value}, alias


@pytest.mark.parametrize('name', NAMES)
def test_config_file_errors_name_the_file(name, tmp_path, capsys):
    recipe_class = get_recipe(name)
    typed = next(p for p in recipe_class.hyperparameters
                 if p.type in (int, float))
    for text, message in [
            ('bogus_key = 1\n', "run.toml: unknown key 'bogus_key'"),
            (f'{typed.name} = "x"\n', f'run.toml: {typed.name} must be')]:
        path = tmp_path / 'run.toml'
        path.write_text(text)
        assert main(['train', '--model', name, '--config', str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count('\n') == 1 and message in err, err


def test_a_registered_model_gets_every_case(tmp_path):
    # A plug-in registering a toy model before collection: this module
    # collects its cases without an edit.
    plugin = tmp_path / 'toy_plugin.py'
    plugin.write_text(textwrap.dedent('''
        from diffkg_pyg.train import register
        from diffkg_pyg.train.recipes import LightGCNRecipe

        @register
        class ToyRecipe(LightGCNRecipe):
            name = 'toy-for-test'
            description = 'a toy'
    '''))
    out = subprocess.run(
        [sys.executable, '-m', 'pytest', '--collect-only', '-q',
         '-p', 'toy_plugin', '-p', 'no:cacheprovider', __file__],
        cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, 'PYTHONPATH': str(tmp_path)})
    assert out.returncode == 0, out.stdout + out.stderr
    toy = [line for line in out.stdout.splitlines() if 'toy-for-test' in
           line]
    cases = {line.split('::')[1].split('[')[0] for line in toy}
    expected = {name for name, obj in globals().items()
                if name.startswith('test_') and
                hasattr(obj, 'pytestmark') and any(
                    m.name == 'parametrize' and m.args[0] == 'name'
                    for m in obj.pytestmark)}
    assert expected and cases == expected


def test_result_record_names_the_dataset():
    trainer = make_trainer('lightgcn')
    record = trainer.result_record(trainer.fit(1, patience=1))
    assert record['dataset']['name'] == 'synthetic'
    assert len(record['dataset']['fingerprint']) == 64
    json.dumps(record)  # JSON-ready.
