import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

optuna = pytest.importorskip('optuna')

from diffkg_pyg.cli import main  # noqa: E402
from diffkg_pyg.data import USER_ITEM  # noqa: E402
from diffkg_pyg.hyperparameters import HyperParameter, Space  # noqa: E402
from diffkg_pyg.train import MODELS, Trainer, get_recipe  # noqa: E402
from diffkg_pyg.train.hyperparameters import read_config  # noqa: E402
from diffkg_pyg.train.tuning import (  # noqa: E402
    read_space,
    search_space,
    tune,
    without_test,
    write_config,
)
from diffkg_pyg.train.tuning.study import (  # noqa: E402
    _study_names,
    open_study,
)
from tests.conftest import write, write_kgat_folder  # noqa: E402
from tests.train.test_trainer import small_data  # noqa: E402

# Small models and short runs: a trial takes well under a second.
FIXED = {
    'lightgcn': dict(embedding_dim=8),
    'diffkg': dict(embedding_dim=8, denoiser_hidden_channels=16,
                   use_compile=False),
    'diffrec': dict(time_channels=4),
}
SETTINGS = dict(epochs=3, patience=2, batch_size=64, max_batches=2)


def flags(values):
    out = []
    for key, value in values.items():
        out += [f'--{key.replace("_", "-")}', str(value)]
    return out


@pytest.mark.parametrize('space, message', [
    (dict(low=1.0, high=1.0), 'low < high'),
    (dict(low=0.0, high=1.0, log=True), 'low > 0'),
    (dict(low=1e-3, high=1.0, log=True, step=0.1), 'not both'),
    (dict(choices=()), 'non-empty'),
    (dict(low=0.0, choices=(1, )), 'either'),
])
def test_bad_spaces(space, message):
    with pytest.raises(ValueError, match=message):
        Space(**space)


@pytest.mark.parametrize('space, value', [
    (Space(1, 4), 3),
    (Space(1e-4, 1e-2, log=True), 5e-3),
    (Space(0.1, 0.9, step=0.2), 0.5),
    (Space(choices=((300, ), (200, 600))), (200, 600)),
    (Space(choices=(0.0, 0.1)), 0.1),
])
def test_space_suggests_the_fixed_value(space, value):
    kind = type(value) if not isinstance(value, tuple) else tuple
    parameter = HyperParameter('x', kind, '', value)
    space.check(parameter)
    encoded = ','.join(map(str, value)) if kind is tuple else value
    assert space.suggest(optuna.trial.FixedTrial({'x': encoded}),
                         parameter) == value
    assert Space.from_config(space.to_dict()) == space


def test_space_checks_its_parameter():
    with pytest.raises(ValueError, match='must be one of'):
        Space(choices=('x', 'y')).check(
            HyperParameter('mean_type', str, '', 'x0', choices=('x0', 'eps')))
    with pytest.raises(ValueError, match='among choices'):
        Space(0, 1).check(HyperParameter('norm', bool, '', True))
    with pytest.raises(ValueError, match='integers'):
        Space(0.5, 4).check(HyperParameter('layers', int, '', 1))


@pytest.mark.parametrize('name', sorted(MODELS))
def test_every_model_declares_a_valid_space(name):
    recipe = get_recipe(name)
    spaces = search_space(recipe)
    assert 'lr' in spaces and len(spaces) >= 2
    for parameter, space in spaces.values():
        space.check(parameter)


@pytest.mark.parametrize('name', sorted(MODELS))
def test_every_default_lies_in_its_space(name):
    for parameter, space in search_space(get_recipe(name)).values():
        assert parameter.default in space, parameter.name


def test_the_first_trial_is_the_default_configuration(tmp_path):
    result = tune(small_data(), 'lightgcn', 2, str(tmp_path), pruner='none',
                  hyperparameters={'embedding_dim': 8, 'num_layers': 1},
                  settings=SETTINGS, log=lambda line: None)
    study = optuna.load_study(study_name='lightgcn-data',
                              storage=result.storage)
    assert study.trials[0].params == {'lr': 1e-3, 'l2_weight': 1e-4}
    assert study.trials[1].params != study.trials[0].params


def test_published_ranges_are_declared():
    assert set(search_space(get_recipe('diffkg'))) >= {
        'ssl_weight', 'temperature', 'ckgc_weight', 'keep_rate', 'rebuild_k',
        'kg_sample_size', 'l2_weight', 'lr', 'diffusion_steps',
        'noise_scale'}
    assert set(search_space(get_recipe('lightgcn'))) == {
        'num_layers', 'l2_weight', 'lr'}
    diffrec = search_space(get_recipe('diffrec'))
    assert set(diffrec) >= {'lr', 'hidden_channels', 'diffusion_steps',
                            'noise_scale', 'noise_min', 'noise_max'}
    assert diffrec['lr'][1].high == 1e-3  # The model's own lr range.
    low, high = diffrec['noise_min'][1], diffrec['noise_max'][1]
    assert max(low.choices) <= min(high.choices)


def test_search_space_fixed_and_overrides():
    recipe = get_recipe('diffkg')
    spaces = search_space(recipe, ['ssl_reg', 'lr'],
                          {'keepRate': Space(0.5, 0.9),
                           'embedding_dim': Space(choices=(8, 16))})
    assert 'ssl_weight' not in spaces and 'lr' not in spaces
    assert spaces['keep_rate'][1] == Space(0.5, 0.9)
    assert spaces['embedding_dim'][1].choices == (8, 16)
    with pytest.raises(ValueError, match="unknown key 'bogus'"):
        search_space(recipe, (), {'bogus': Space(0, 1)})
    with pytest.raises(ValueError, match='seed is not searched'):
        search_space(recipe, (), {'seed': Space(0, 9)})
    with pytest.raises(ValueError, match='both given a value and searched'):
        search_space(recipe, ['keep_rate'], {'keep_rate': Space(0.5, 0.9)})


def test_read_space_file(tmp_path):
    path = write(tmp_path / 'space.toml',
                 'ssl_reg = 0.0\n[lr]\nlow = 1e-4\nhigh = 1e-2\nlog = true\n'
                 '[rebuild_k]\nchoices = [1, 2]\n')
    spaces, fixed = read_space(path, get_recipe('diffkg'))
    assert spaces == {'lr': Space(1e-4, 1e-2, log=True),
                      'rebuild_k': Space(choices=(1, 2))}
    assert fixed == {'ssl_reg': 0.0}
    bad = write(tmp_path / 'bad.toml', '[lr]\nlow = 1e-4\nhihg = 1\n')
    with pytest.raises(ValueError, match=r"bad.toml: \[lr\]: unknown key "
                       "'hihg'"):
        read_space(bad, get_recipe('diffkg'))
    bad = write(tmp_path / 'bad.toml', '[keep_rate]\nchoices = ["a"]\n')
    with pytest.raises(ValueError, match='keep_rate must be a float'):
        read_space(bad, get_recipe('diffkg'))


def test_write_config_round_trip(tmp_path):
    config = {'model': 'diffrec', 'lr': 1e-05, 'dims': (200, 600),
              'norm': False, 'seed': 3, 'max_batches': None}
    path = str(tmp_path / 'best.toml')
    write_config(path, config, comment='two\nlines')
    assert read_config(path) == {'model': 'diffrec', 'lr': 1e-05,
                                 'dims': [200, 600], 'norm': False,
                                 'seed': 3}


def test_without_test_keeps_everything_else():
    data = small_data()
    search = without_test(data)
    assert search[USER_ITEM].test_edge_index.size(1) == 0
    assert data[USER_ITEM].test_edge_index.size(1) > 0  # Not modified.
    assert search[USER_ITEM].edge_index is data[USER_ITEM].edge_index


@pytest.mark.parametrize('name', ['lightgcn', 'diffkg'])
def test_search_never_reads_the_test_set(name, tmp_path, monkeypatch):
    calls = []
    evaluate = Trainer.evaluate

    def spy(trainer, evaluator):
        calls.append(evaluator is trainer.test_evaluator)
        return evaluate(trainer, evaluator)

    monkeypatch.setattr(Trainer, 'evaluate', spy)
    fits = []
    fit = Trainer.fit

    def record_fit(trainer, *args, **kwargs):
        fits.append(trainer.test_evaluator)
        return fit(trainer, *args, **kwargs)

    monkeypatch.setattr(Trainer, 'fit', record_fit)
    result = tune(small_data(), name, 3, str(tmp_path), pruner='none',
                  hyperparameters=FIXED[name], settings=SETTINGS,
                  log=lambda line: None)
    assert len(calls) >= 3 and not any(calls)  # Validation only, on data
    # whose test interactions are gone: the 3 trials and the confirmation
    # of the best 3 with 3 seeds each.
    assert len(fits) == 3 + 3 * 3
    assert all(evaluator.target_col.numel() == 0 for evaluator in fits)
    assert result.final == [] and not (tmp_path / 'final').exists()
    for number in range(3):
        trial = json.loads((tmp_path / 'trials' /
                            f'trial-{number:05d}.json').read_text())
        assert trial['state'] == 'complete' and trial['test'] == {}


def test_timeout_is_a_budget_of_the_study(tmp_path):
    # The budget is the finished trials' summed durations: after one trial
    # of a 1e-6 s budget no trial starts, and a restart on the same study
    # starts none either (a per-process clock would give it a new budget).
    lines = []
    kwargs = dict(pruner='none', hyperparameters=FIXED['lightgcn'],
                  settings=SETTINGS, timeout=1e-6, log=lines.append)
    tune(small_data(), 'lightgcn', 4, str(tmp_path), **kwargs)
    tune(small_data(), 'lightgcn', 4, str(tmp_path), **kwargs)
    study = optuna.load_study(study_name='lightgcn-data',
                              storage=f'sqlite:///{tmp_path}/study.db')
    assert len(study.trials) == 1
    assert sum('timeout: the finished trials took' in line
               for line in lines) == 2


def test_final_seeds_test_after_the_search(tmp_path):
    result = tune(small_data(), 'lightgcn', 2, str(tmp_path), pruner='none',
                  hyperparameters=FIXED['lightgcn'], settings=SETTINGS,
                  final_seeds=2, log=lambda line: None)
    assert [r['seed'] for r in result.final] == [0, 1]
    assert all(r['test']['recall@20'] >= 0 for r in result.final)
    summary = json.loads((tmp_path / 'final.json').read_text())
    mean = summary['test']['recall@20']['mean']
    assert mean == pytest.approx(sum(r['test']['recall@20']
                                     for r in result.final) / 2)
    assert result.final_test['recall@20'][0] == pytest.approx(mean)


@pytest.mark.parametrize('name', ['lightgcn', 'diffrec', 'diffkg'])
def test_best_config_reproduces_the_best_trial(name, tmp_path, capsys):
    folder = write_kgat_folder(tmp_path / 'data')
    out = tmp_path / 'tune'
    argv = ['tune', str(folder), '--model', name, '--trials', '3',
            '--pruner', 'none', '--output', str(out), '--seed', '2',
            '--val-ratio', '0.2', *flags({**FIXED[name], **SETTINGS})]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert 'winner: trial' in text
    study = optuna.load_study(study_name=f'{name}-data',
                              storage=f'sqlite:///{out}/study.db')
    assert len(study.trials) == 3
    winner = study.trials[json.loads((out / 'confirm.json').read_text())[
        'winner']]
    config = read_config(str(out / 'best.toml'))
    assert config['model'] == name and config['seed'] == 2
    result = tmp_path / 'result.json'
    assert main(['train', str(folder), '--config', str(out / 'best.toml'),
                 '--val-ratio', '0.2', '--output', str(result)]) == 0
    valid = json.loads(result.read_text())['valid']['recall@20']
    assert winner.value > 0  # Not trivially equal.
    assert valid == pytest.approx(winner.value, abs=1e-6)
    assert (out / 'study.png').stat().st_size > 1000


def test_pruning_reports_every_validation(tmp_path):
    reported = []

    class Recorder(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            reported.append(trial.last_step)
            return trial.last_step == 2  # Prune every trial at epoch 2.

    with pytest.raises(ValueError, match='no trial .* completed'):
        tune(small_data(), 'lightgcn', 2, str(tmp_path), pruner=Recorder(),
             hyperparameters=FIXED['lightgcn'],
             settings={**SETTINGS, 'epochs': 4, 'patience': 4},
             log=lambda line: None)
    assert reported == [1, 2, 1, 2]
    trial = json.loads((tmp_path / 'trials' / 'trial-00000.json')
                       .read_text())
    assert trial['state'] == 'pruned'
    assert [r['epoch'] for r in trial['curve']] == [1, 2]


def test_diverged_trials_fail_and_count(tmp_path):
    # Every trial diverges: each fails with its error, counts towards the
    # budget (the study ends after 3), and no configuration is written.
    with pytest.raises(ValueError, match='no trial .* completed'):
        tune(small_data(), 'lightgcn', 3, str(tmp_path), pruner='none',
             hyperparameters=FIXED['lightgcn'], settings=SETTINGS,
             space={'lr': Space(choices=(1e30, ))}, log=lambda line: None)
    trials = [json.loads(p.read_text())
              for p in sorted((tmp_path / 'trials').iterdir())]
    assert [t['state'] for t in trials] == ['failed'] * 3
    assert all("'loss' is nan" in t['error'] for t in trials)
    assert not (tmp_path / 'best.toml').exists()


@pytest.mark.parametrize('argv, message', [
    (['--trials', '0'], '--trials must be >= 1'),
    (['--trials', '1', '--final-seeds', '-1'], '--final-seeds must be >= 0'),
    (['--trials', '1', '--timeout', '0'], '--timeout must be > 0'),
    (['--trials', '1', '--pruner', 'hyperband'], 'invalid choice'),
])
def test_bad_tune_arguments(argv, message, capsys):
    assert main(['tune', 'synthetic', '--model', 'lightgcn', *argv]) == 2
    assert message in capsys.readouterr().err


def test_bad_space_file_is_one_line(tmp_path, capsys):
    space = write(tmp_path / 'space.toml', '[nope]\nlow = 1\nhigh = 2\n')
    assert main(['tune', 'synthetic', '--model', 'lightgcn', '--trials', '1',
                 '--space', space, '--output', str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and "space.toml: unknown key 'nope'" in err


def test_study_of_another_space_is_refused(tmp_path):
    kwargs = dict(hyperparameters=FIXED['lightgcn'], settings=SETTINGS,
                  pruner='none', log=lambda line: None)
    tune(small_data(), 'lightgcn', 1, str(tmp_path), **kwargs)
    with pytest.raises(ValueError, match='was started with another space'):
        tune(small_data(), 'lightgcn', 2, str(tmp_path),
             space={'num_layers': Space(1, 2)}, **kwargs)


ATTRIBUTES = {'model': 'lightgcn', 'space': {'lr': [1e-3, 1e-2]},
              'metric': 'valid recall@20'}


def _open(storage, **kwargs):
    return open_study(storage, 'study', 0, 'none', 30.0, ATTRIBUTES,
                       {'lr': 1e-3}, **kwargs)


def test_only_the_creator_writes_a_study_settings(tmp_path):
    storage = f'sqlite:///{tmp_path}/study.db'
    created = _open(storage)
    assert created.user_attrs == ATTRIBUTES
    assert [t.system_attrs['fixed_params'] for t in created.trials] == [
        {'lr': 1e-3}]
    loaded = _open(storage)  # Finds both; enqueues no second default.
    assert loaded.user_attrs == ATTRIBUTES and len(loaded.trials) == 1


def test_a_loader_waits_for_the_creator_to_finish(tmp_path):
    # Another process created the study and has written part of its
    # settings: the loader neither takes the missing ones for a mismatch
    # nor writes its own, it waits for the rest.
    storage = f'sqlite:///{tmp_path}/study.db'
    study = optuna.create_study(storage=storage, study_name='study')
    study.set_user_attr('model', 'lightgcn')

    def finish():
        time.sleep(0.5)
        for key in ('space', 'metric'):
            study.set_user_attr(key, ATTRIBUTES[key])
    creator = threading.Thread(target=finish)
    creator.start()
    loaded = _open(storage)
    creator.join()
    assert loaded.user_attrs == ATTRIBUTES
    assert loaded.trials == []  # The default is the creator's to enqueue.


def test_a_study_whose_creator_died_is_refused(tmp_path):
    storage = f'sqlite:///{tmp_path}/study.db'
    optuna.create_study(storage=storage, study_name='study')
    with pytest.raises(ValueError, match='no complete settings'):
        _open(storage, wait=0.3)


def _tune_process(folder, out, trials, epochs=6, extra=(),
                  stdout=subprocess.DEVNULL):
    argv = [sys.executable, '-m', 'diffkg_pyg', 'tune', str(folder),
            '--model', 'lightgcn', '--trials', str(trials), '--pruner',
            'none', '--output', str(out), '--val-ratio', '0.2',
            '--threads', '1', '--heartbeat', '1', *extra,
            *flags({**FIXED['lightgcn'], **SETTINGS, 'epochs': epochs,
                    'patience': epochs})]
    return subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE,
                            text=True)


def _finished(out):
    folder = out / 'trials'
    return sorted(folder.iterdir()) if folder.exists() else []


@pytest.mark.slow
def test_killed_study_resumes_without_repeating_trials(tmp_path):
    folder = write_kgat_folder(tmp_path / 'data')
    out = tmp_path / 'tune'
    process = _tune_process(folder, out, 5, epochs=100)  # Trials of ~1 s.
    deadline = time.monotonic() + 120
    while len(_finished(out)) < 2 and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    storage = f'sqlite:///{out}/study.db'
    running = []
    while not running:  # Kill it inside a trial.
        assert time.monotonic() < deadline and process.poll() is None
        running = [t for t in optuna.load_study(
            study_name='lightgcn-data', storage=storage).trials
            if t.state == optuna.trial.TrialState.RUNNING]
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = {p.name: p.read_text() for p in _finished(out)}
    running = [t for t in optuna.load_study(
        study_name='lightgcn-data', storage=storage).trials
        if t.state == optuna.trial.TrialState.RUNNING]
    assert len(running) == 1
    time.sleep(2.5)  # Twice the heartbeat: the running trial is stale.
    restarted = _tune_process(folder, out, 5, epochs=100)
    assert restarted.wait(timeout=300) == 0, restarted.stderr.read()
    trials = optuna.load_study(study_name='lightgcn-data',
                               storage=storage).trials
    complete = [t for t in trials
                if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 5
    after = {p.name: p.read_text() for p in _finished(out)}
    assert len(after) == 5
    for name, text in before.items():  # Finished trials were not rerun.
        assert after[name] == text
    for trial in running:  # The interrupted trial failed and was retried.
        assert trials[trial.number].state == optuna.trial.TrialState.FAIL
        retries = [t for t in complete if t.params == trial.params]
        assert len(retries) == 1 and retries[0].number > trial.number


@pytest.mark.slow
def test_two_processes_share_one_sqlite_study(tmp_path):
    folder = write_kgat_folder(tmp_path / 'data')
    out = tmp_path / 'tune'
    out.mkdir()
    logs = [open(tmp_path / f'process-{i}.txt', 'w') for i in range(2)]
    processes = [_tune_process(folder, out, 6, extra=['--final-seeds', '3'],
                               stdout=log) for log in logs]
    for process, log in zip(processes, logs):
        assert process.wait(timeout=300) == 0, process.stderr.read()
        log.close()
    # The 3 x 3 confirmation runs and the 3 final seeds are split between
    # the processes: each trains a run that no other process trains.
    lines = [line for i in range(2) for line in
             (tmp_path / f'process-{i}.txt').read_text().splitlines()]
    confirmed = [line.split(':')[0] for line in lines
                 if line.startswith('confirm trial') and ' seed ' in line]
    final = [line.split(':')[0] for line in lines
             if line.startswith('final seed')]
    assert len(confirmed) == len(set(confirmed)) == 9
    assert sorted(final) == [f'final seed {seed}' for seed in range(3)]
    assert not list(out.glob('**/*.lock'))
    study = optuna.load_study(study_name='lightgcn-data',
                              storage=f'sqlite:///{out}/study.db')
    complete = [t for t in study.trials
                if t.state == optuna.trial.TrialState.COMPLETE]
    # Each process stops once the study holds 6; starting together, each
    # may add one more.
    assert 6 <= len(complete) <= 7
    assert len({t.number for t in complete}) == len(complete)
    params = [tuple(sorted(t.params.items())) for t in complete]
    assert len(set(params)) == len(params)  # No draw repeated.
    assert len(_finished(out)) == len(study.trials)


# Issue 28: the sampler, the pruner, the study's record, the confirmation ##

@pytest.mark.parametrize('patience,eval_every,warmup', [
    (20, 1, 20), (2, 1, 3), (20, 5, 20), (10, 5, 15)])
def test_no_trial_is_pruned_before_the_patience(patience, eval_every,
                                                warmup):
    from diffkg_pyg.train.tuning.search import make_pruner, pruning_warmup
    assert pruning_warmup(patience, eval_every) == warmup
    study = optuna.create_study(direction='maximize',
                                pruner=make_pruner('median', warmup))
    for _ in range(6):  # Complete trials reaching 0.5 at every epoch.
        trial = study.ask()
        for epoch in range(1, 41):
            trial.report(0.5, epoch)
        study.tell(trial, 0.5)
    low = study.ask()  # Far below the median from the first epoch.
    pruned_at = None
    for epoch in range(1, 41):
        low.report(0.01, epoch)
        if low.should_prune():
            pruned_at = epoch
            break
    assert pruned_at == warmup


def test_the_study_records_how_it_ran(tmp_path):
    result = tune(small_data(), 'lightgcn', 3, str(tmp_path),
                  hyperparameters=FIXED['lightgcn'], settings=SETTINGS,
                  confirm_top=0, log=lambda line: None)
    study = optuna.load_study(study_name=result.study_name,
                              storage=result.storage)
    attrs = study.user_attrs
    assert attrs['model'] == 'lightgcn' and attrs['sampler'] == 'tpe'
    assert attrs['pruner'] == 'median'
    assert 'n_startup_trials = max(3, ceil(n_trials / 4)) = 3' in \
        attrs['sampler_rule']
    assert 'epoch 3 on' in attrs['pruner_rule']  # max(patience 2, 3 x 1).
    assert attrs['budget']['n_trials'] == 3
    assert attrs['version'] and 'commit' in attrs
    trial = json.loads((tmp_path / 'trials' / 'trial-00001.json')
                       .read_text())
    assert trial['code'] == {'version': attrs['version'],
                             'commit': attrs['commit']}


def test_studies_of_other_models_draw_apart_and_random_is_common():
    from diffkg_pyg.train.tuning.search import make_sampler

    def draws(kind, name):
        study = optuna.create_study(
            sampler=make_sampler(kind, 0, name, 30), direction='maximize')
        values = []
        for _ in range(3):
            trial = study.ask()
            values.append(trial.suggest_float('x', 0.0, 1.0))
            study.tell(trial, values[-1])
        return values

    assert draws('tpe', 'a-data') != draws('tpe', 'b-data')
    assert draws('tpe', 'a-data') == draws('tpe', 'a-data')
    assert draws('random', 'a-data') == draws('random', 'b-data')


def test_confirmation_picks_by_mean_validation_over_seeds(tmp_path,
                                                          monkeypatch):
    # Three complete trials; in the search the first looks best, but over
    # the confirmation seeds the second is best on average.
    from diffkg_pyg.train.results import FitResult
    from diffkg_pyg.train.tuning import confirmation as confirm_module
    from diffkg_pyg.train.tuning import shared as shared_module
    means = {1e-3: [0.2, 0.2, 0.2], 2e-3: [0.5, 0.1, 0.6],
             3e-3: [0.3, 0.3, 0.3]}

    class FakeTrainer:
        def __init__(self, recipe, settings):
            self.recipe, self.settings = recipe, settings
            self.lr, self.seed = settings['lr'], settings['seed']

        @classmethod
        def from_settings(cls, recipe, data, settings, **kwargs):
            return cls(recipe, settings)

        def fit(self, epochs, patience, test=True):
            assert not test
            value = means[self.lr][self.seed - 1]
            return FitResult(1, 1, 0.0, {'recall@20': value}, {})

        def result_record(self, fit):  # What the run's record names.
            return {'model': self.recipe.name, 'seed': self.seed,
                    'settings': self.settings,
                    'hyperparameters': self.recipe.hparams,
                    'valid': fit.valid}

    monkeypatch.setattr(shared_module, 'Trainer', FakeTrainer)
    study = optuna.create_study(direction='maximize')
    for lr, value in ((1e-3, 0.9), (2e-3, 0.8), (3e-3, 0.7), (4e-3, 0.1)):
        config = {'model': 'lightgcn', 'lr': lr, 'seed': 0,
                  **FIXED['lightgcn']}
        study.enqueue_trial({'x': 0.0}, user_attrs={'config': config})
        trial = study.ask()
        trial.suggest_float('x', 0.0, 1.0)
        study.tell(trial, value)
    summary = confirm_module.confirm(study, small_data(),
                                     get_recipe('lightgcn'), str(tmp_path),
                                     top=3, seeds=3, seed=0, device=None,
                                     log=lambda line: None)
    assert [row['trial'] for row in summary['candidates']] == [0, 1, 2]
    assert summary['winner'] == 1  # Mean 0.4 beats 0.2 and 0.3.
    assert [row['seeds'] for row in summary['candidates']][0] == [1, 2, 3]
    # Resumed: the finished runs are read back, not run again.
    monkeypatch.setattr(FakeTrainer, 'fit', None)
    again = confirm_module.confirm(study, small_data(),
                                   get_recipe('lightgcn'), str(tmp_path),
                                   top=3, seeds=3, seed=0, device=None,
                                   log=lambda line: None)
    assert again == summary


def _runs(tmp_path, trained, count=3):
    def run(i):
        return lambda: trained.append(i) or {'run': i}
    return [(str(tmp_path / f'run-{i}.json'), run(i)) for i in range(count)]


def test_runs_held_by_another_process_are_not_repeated(tmp_path):
    from diffkg_pyg.files import file_lock, save_json
    from diffkg_pyg.train.tuning.shared import run_shared
    trained = []
    runs = _runs(tmp_path, trained)
    save_json(runs[2][0], {'run': 2, 'by': 'an earlier process'})
    records = []
    # Another process trains run 0 (here: another open file description
    # of its lock, which `flock` treats alike).
    with file_lock(runs[0][0] + '.lock', wait=False) as held:
        assert held
        thread = threading.Thread(target=lambda: records.append(
            run_shared(runs, poll=0.05)))
        thread.start()
        deadline = time.monotonic() + 30
        while not os.path.exists(runs[1][0]):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.2)
        assert thread.is_alive() and trained == [1]  # Waits for run 0.
        save_json(runs[0][0], {'run': 0, 'by': 'the other process'})
    thread.join(timeout=30)
    assert records == [[{'run': 0, 'by': 'the other process'}, {'run': 1},
                        {'run': 2, 'by': 'an earlier process'}]]
    assert trained == [1]
    assert not os.path.exists(runs[1][0] + '.lock')


def test_a_run_whose_process_died_is_taken_over(tmp_path):
    from diffkg_pyg.train.tuning.shared import run_shared
    trained = []
    runs = _runs(tmp_path, trained, count=1)
    open(runs[0][0] + '.lock', 'w').close()  # Left by a killed process.
    assert run_shared(runs, poll=30) == [{'run': 0}] and trained == [0]
    assert not os.path.exists(runs[0][0] + '.lock')


@pytest.mark.parametrize('text, retried', [
    ('UNIQUE constraint failed: alembic_version.version_num', True),
    ('table studies already exists', True),
    ('database is locked', True),
    ('file is not a database', False),
])
def test_reading_study_names_retries_only_the_creation_race(
        monkeypatch, text, retried):
    import optuna
    from sqlalchemy.exc import IntegrityError
    calls = []

    def names(storage):
        calls.append(storage)
        if len(calls) == 1:  # The other process is creating the schema.
            raise IntegrityError('INSERT', {}, Exception(text))
        return ['a-study']

    monkeypatch.setattr(optuna, 'get_all_study_names', names)
    monkeypatch.setattr(time, 'sleep', lambda seconds: None)
    if retried:
        assert _study_names('sqlite:///x.db') == ['a-study']
        assert len(calls) == 2
    else:
        with pytest.raises(ValueError, match='not a readable Optuna study'):
            _study_names('sqlite:///x.db')
