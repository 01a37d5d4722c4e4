import json
import subprocess
import sys

import pytest

import diffkg_pyg
from diffkg_pyg.cli import main
from diffkg_pyg.data import load_dataset
from diffkg_pyg.train import MODELS
from diffkg_pyg.train.checkpoint import fingerprint
from tests.conftest import write

STATS_KEYS = {'num_users', 'num_items', 'num_entities', 'num_relations',
              'num_train', 'num_val', 'num_test', 'num_triplets',
              'num_kg_edges'}


def test_stats_json(kgat_folder, capsys):
    assert main(['stats', str(kgat_folder), '--json']) == 0
    stats = json.loads(capsys.readouterr().out)
    assert set(stats) == STATS_KEYS
    assert stats['num_triplets'] == 4 and stats['num_kg_edges'] == 8


def test_stats_table(capsys):
    assert main(['stats', 'synthetic']) == 0
    out = capsys.readouterr().out
    assert out.startswith('| synthetic') and '| users' in out


def test_train_output(kgat_folder, tmp_path, capsys):
    output = tmp_path / 'out' / 'results.json'
    argv = ['train', str(kgat_folder), '--model', 'lightgcn', '--epochs', '2',
            '--seed', '1', '--max-batches', '1', '--val-ratio', '0.3',
            '--output', str(output)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert 'valid recall@20' in out and 'test  recall@20' in out
    result = json.loads(output.read_text())
    assert {'model', 'dataset', 'epochs_run', 'best_epoch', 'seconds',
            'valid', 'test', 'peak_rss_mb'} <= set(result)
    assert 50 < result['peak_rss_mb'] < 1e5  # MiB: torch alone is ~200.
    assert result['model'] == 'lightgcn'
    # The dataset as a reader on another machine can identify it:
    data = load_dataset(str(kgat_folder), val_ratio=0.3, log=False)
    assert result['dataset'] == {'name': 'tiny', 'layout': 'kgat',
                                 'fingerprint': fingerprint(data)}
    assert result['code']['version'] == diffkg_pyg.__version__
    assert result['epochs_run'] == 2
    assert {'recall@20', 'ndcg@20'} <= set(result['test'])
    # The test metrics by user activity, the coldest bucket first:
    buckets = result['test_by_activity']
    assert buckets and all({'users', 'recall@20'} <= set(b)
                           for b in buckets.values())


def test_train_diffkg_output(kgat_folder, tmp_path, capsys):
    output = tmp_path / 'results.json'
    argv = ['train', str(kgat_folder), '--epochs', '2', '--max-batches', '1',
            '--val-ratio', '0.3', '--preset', 'lastfm', '--keep-rate', '0.7',
            '--denoiser-hidden-channels', '8', '--embedding-dim', '4',
            '--no-use-compile', '--output', str(output)]
    assert main(argv) == 0
    assert 'diffkg on' in capsys.readouterr().out
    result = json.loads(output.read_text())
    assert result['model'] == 'diffkg' and result['preset'] == 'lastfm'
    hyperparameters = result['hyperparameters']
    assert hyperparameters['keep_rate'] == 0.7  # The flag beats the preset,
    assert hyperparameters['ckgc_weight'] == 0.01  # which beats the
    assert hyperparameters['num_negatives'] == 1  # default.
    assert hyperparameters['use_compile'] is False
    assert result['settings']['max_batches'] == 1
    assert result['kg_edges_kept'] >= 0
    # noise_columns 0 (the default) chose the CPU's estimator, recorded:
    assert hyperparameters['noise_columns'] == 0
    assert result['noise_columns_used'] == 16384
    assert set(result['phase_seconds']) == {'diffusion', 'rebuild',
                                            'recommendation', 'train',
                                            'eval'}
    assert all('kg_edges_kept' in record for record in result['history'])


@pytest.mark.parametrize('argv,message', [
    (['stats', 'nowhere'], 'neither a dataset folder nor a built-in'),
    (['train', '--epochs', '0'], '--epochs: epochs must be >= 1'),
    (['train', '--max-batches', '-1'],
     '--max-batches: max_batches must be >= 1'),
    (['train', '--keep-rate', '0'],
     '--keep-rate: keep_rate must be in (0, 1] (got 0.0)'),
    (['train', '--model', 'lightgcn', '--keep-rate', '0.2'],
     '--keep-rate is not a hyper-parameter of lightgcn (it is one of '
     'diffkg'),
    (['train', '--model', 'lightgcn', '--no-diffusion'],
     '--no-diffusion is not a hyper-parameter of lightgcn'),
    (['train', '--model', 'lightgcn', '--preset', 'mind'],
     "unknown preset 'mind' for lightgcn (known: none)"),
    (['train', '--model', 'nope'], "unknown model 'nope'"),
    (['train', '--main-view', 'x'], 'argument --main-view: invalid choice'),
    (['train', '--cl_pattern', '2'], 'cl_pattern must be 0 or 1'),
    (['train', '--dims', '[100,100]'], 'dims must be one hidden size'),
    (['train', '--bogus'], 'unrecognized arguments: --bogus'),
    (['models', 'nope'], "unknown model 'nope'"),
])
def test_bad_arguments(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith('diffkg-pyg: error: ') and message in err
    assert 'Traceback' not in err and err.count('\n') == 1


def test_bad_file_names_file_and_line(kgat_folder, capsys):
    write(kgat_folder / 'kg_final.txt', '0 0 4\n1 0 4\n2 one 5\n')
    assert main(['stats', str(kgat_folder)]) == 2
    err = capsys.readouterr().err
    assert "kg_final.txt, line 3: invalid token 'one'" in err
    with pytest.raises(ValueError, match='line 3'):
        main(['stats', str(kgat_folder), '--debug'])


@pytest.mark.slow  # The default run: DiffKG to early stopping.
def test_no_arguments_trains_on_synthetic_default():
    # The console entry point, as a user runs it (`python -m` is the same
    # function as the `diffkg-pyg` script).
    result = subprocess.run([sys.executable, '-m', 'diffkg_pyg'],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert 'diffkg on synthetic' in result.stdout
    assert 'kg_edges_kept' in result.stdout
    assert 'valid recall@20' in result.stdout
    assert 'test  recall@20' in result.stdout


def test_models_lists_every_registered_model(capsys):
    assert main(['models']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(MODELS)
    assert all(len(line.split()) > 2 for line in lines)  # A description.


@pytest.mark.parametrize('name', sorted(MODELS))
def test_models_name_lists_hyperparameters(name, capsys):
    from diffkg_pyg.train import get_recipe
    assert main(['models', name]) == 0
    out = capsys.readouterr().out
    for parameter in get_recipe(name).hyperparameters:
        line = next(line for line in out.splitlines()
                    if line.startswith(parameter.flag + ' '))
        assert repr(parameter.default) in line and parameter.help in line
    assert '--epochs' in out  # The training settings too.


@pytest.mark.parametrize('name', sorted(MODELS))
def test_train_help_shows_the_model_flags(name, capsys):
    from diffkg_pyg.train import get_recipe
    with pytest.raises(SystemExit):
        main(['train', '--model', name, '--help'])
    out = capsys.readouterr().out
    assert all(p.flag in out for p in get_recipe(name).hyperparameters)


def _hyperparameters(argv, tmp_path, name='run'):
    output = tmp_path / f'{name}.json'
    assert main(['train', 'synthetic', '--epochs', '1', '--max-batches', '1',
                 '--denoiser-hidden-channels', '8', '--embedding-dim', '4',
                 '--no-use-compile', '--output', str(output), *argv]) == 0
    result = json.loads(output.read_text())
    return result['hyperparameters'], result['settings']


def test_authors_names_translate_one_to_one(tmp_path):
    # The authors' Last-FM command (their README), as aliases:
    authors = ['--reg', '1e-5', '--mess_dropout_rate', '0.2',
               '--layer_num_kg', '2', '--res_lambda', '0', '--triplet_num',
               '-1', '--cl_pattern', '1', '--keepRate', '0.1', '--e_loss',
               '0.01', '--batch', '512', '--epoch', '1']
    ours = ['--l2-weight', '1e-5', '--kg-dropout', '0.2', '--num-kg-layers',
            '2', '--kg-residual', '0', '--kg-sample-size', '-1',
            '--main-view', 'original', '--keep-rate', '0.1',
            '--ckgc-weight', '0.01', '--batch-size', '512']
    preset = ['--preset', 'lastfm', '--batch-size', '512']
    runs = [_hyperparameters(argv, tmp_path, str(i))
            for i, argv in enumerate((authors, ours, preset))]
    assert runs[0] == runs[1] == runs[2]
    assert runs[0][0]['main_view'] == 'original'


def test_config_file_and_precedence(tmp_path):
    config = write(tmp_path / 'run.toml', 'preset = "alibaba"\n'
                   'lr = 0.01\nbatch_size = 256\nweight_decay = 1e-6\n'
                   'keep_rate = 0.3\ntemp = 0.5\n')
    hyperparameters, settings = _hyperparameters(
        ['--config', config, '--keep-rate', '0.4'], tmp_path)
    assert hyperparameters['keep_rate'] == 0.4  # The flag beats the file,
    assert hyperparameters['temperature'] == 0.5  # the file the preset,
    assert hyperparameters['l2_weight'] == 1e-6  # the preset the default.
    assert hyperparameters['ssl_weight'] == 1.0
    assert settings == {'epochs': 1, 'patience': 10, 'eval_every': 1,
                        'lr': 0.01, 'weight_decay': 1e-6, 'batch_size': 256,
                        'eval_batch_size': 1024, 'seed': 0,
                        'max_batches': 1}


@pytest.mark.parametrize('text,message', [
    ('epochs = 2\nbogus = 1\n', "run.toml: unknown key 'bogus': neither a "
     'training setting nor a hyper-parameter of diffkg'),
    ('lr = "fast"\n', "run.toml: lr must be a float (got 'fast')"),
    ('model = "lightgcn"\nkeep_rate = 0.1\n', "unknown key 'keep_rate'"),
    ('epochs = \n', 'run.toml: not a valid TOML file: Invalid value (at '
     'line 1'),
    ('model = "nope"\n', "run.toml: unknown model 'nope'"),
])
def test_bad_config_files(tmp_path, capsys, text, message):
    config = write(tmp_path / 'run.toml', text)
    assert main(['train', '--config', config]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count('\n') == 1, err


def test_metrics_and_cut_offs_are_chosen_and_recorded(tmp_path, capsys):
    from tests.conftest import write_kgat_folder
    folder = write_kgat_folder(tmp_path / 'd')
    out = tmp_path / 'r.json'
    assert main(['train', str(folder), '--model', 'mf', '--epochs', '1',
                 '--metrics', 'map', 'coverage', '--topk', '5',
                 '--output', str(out)]) == 0
    record = json.loads(out.read_text())
    assert record['evaluation'] == {'mode': 'full', 'ks': [5, 20],
                                    'metrics': ['recall', 'ndcg', 'map',
                                                'coverage']}
    assert list(record['test']) == [f'{m}@{k}' for m in
                                    ('recall', 'ndcg', 'map', 'coverage')
                                    for k in (5, 20)]
    assert 0 < record['test']['coverage@5'] <= 1
