import json
import subprocess
import sys

import pytest

from diffkg_pyg.cli import main
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
            'valid', 'test'} <= set(result)
    assert result['model'] == 'lightgcn'
    assert result['dataset'] == str(kgat_folder)
    assert result['epochs_run'] == 2
    assert {'recall@20', 'ndcg@20'} <= set(result['test'])


def test_train_diffkg_output(kgat_folder, tmp_path, capsys):
    output = tmp_path / 'results.json'
    argv = ['train', str(kgat_folder), '--epochs', '2', '--max-batches', '1',
            '--val-ratio', '0.3', '--preset', 'lastfm', '--keep-rate', '0.7',
            '--denoiser-hidden', '8', '--embedding-dim', '4', '--no-compile',
            '--output', str(output)]
    assert main(argv) == 0
    assert 'diffkg on' in capsys.readouterr().out
    result = json.loads(output.read_text())
    assert result['model'] == 'diffkg' and result['preset'] == 'lastfm'
    hyperparameters = result['hyperparameters']
    assert hyperparameters['keep_rate'] == 0.7  # The flag beats the preset,
    assert hyperparameters['e_loss'] == 0.01  # which beats the default.
    assert hyperparameters['use_compile'] is False
    assert result['kg_edges_kept'] >= 0
    assert set(result['phase_seconds']) == {'diffusion', 'rebuild',
                                            'recommendation', 'eval'}
    assert all('kg_edges_kept' in record for record in result['history'])


@pytest.mark.parametrize('argv,message', [
    (['stats', 'nowhere'], 'neither a dataset folder nor a built-in'),
    (['train', '--epochs', '0'], '--epochs must be >= 1'),
    (['train', '--max-batches', '-1'], '--max-batches must be >= 1'),
    (['train', '--keep-rate', '0'], "'keep_rate' must be in (0, 1]"),
    (['train', '--model', 'lightgcn', '--keep-rate', '0.2'],
     '--keep-rate only apply to --model diffkg'),
    (['train', '--model', 'lightgcn', '--no-diffusion'],
     '--no-diffusion only apply to --model diffkg'),
    (['train', '--model', 'lightgcn', '--preset', 'mind'],
     '--preset only apply to --model diffkg'),
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


def test_no_arguments_trains_on_synthetic_default():
    # The console entry point, as a user runs it (`python -m` is the same
    # function as the `diffkg-pyg` script).
    result = subprocess.run([sys.executable, '-m', 'diffkg_pyg'],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert 'diffkg on synthetic' in result.stdout
    assert 'kg_edges_kept' in result.stdout
    assert 'valid recall@20' in result.stdout
    assert 'test  recall@20' in result.stdout
