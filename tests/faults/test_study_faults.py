r"""Faults of a tuning study's output folder: stale, foreign or damaged
files are refused or re-run, never read back as the winner's."""
import json
import shutil
import threading
import time

import pytest

optuna = pytest.importorskip('optuna')

from tests.faults.common import cli, dataset, one_line  # noqa: E402

TUNE = ['--model', 'mf', '--epochs', '2', '--patience', '1',
        '--confirm-top', '0', '--final-seeds', '1']


def test_final_runs_belong_to_the_winner(tmp_path, capsys):
    # The reproduction of the issue: 3 trials, then the same study to 7;
    # the winner changes (trial 0, then 5), and its test numbers must be
    # its own run's, not the earlier winner's.
    data, out = 'synthetic', tmp_path / 'rw'
    assert cli(capsys, 'tune', data, *TUNE, '--trials', 3, '--output',
               out)[0] == 0
    first = json.loads((out / 'final.json').read_text())['best_trial']
    assert cli(capsys, 'tune', data, *TUNE, '--trials', 7, '--output',
               out)[0] == 0
    final = json.loads((out / 'final.json').read_text())
    record = json.loads((out / final['runs'][0]).read_text())
    assert record['best_trial'] == final['best_trial']
    assert record['run']['trial'] == final['best_trial']
    assert record['run']['study'] == final['study']
    trial = json.loads((out / 'trials' /
                        f'trial-{final["best_trial"]:05d}.json').read_text())
    assert record['hyperparameters']['l2_weight'] == pytest.approx(
        trial['params']['l2_weight'])
    assert first != final['best_trial']
    earlier = json.loads((out / 'final' /
                          f'trial-{first:05d}-seed-0.json').read_text())
    assert earlier['best_trial'] == first  # Kept apart, not read back.
    assert earlier['test'] != record['test']


def test_a_file_of_another_run_is_refused(tmp_path, capsys):
    data, out = dataset(tmp_path), tmp_path / 'rw'
    assert cli(capsys, 'tune', data, *TUNE, '--trials', 2, '--output',
               out)[0] == 0
    final = json.loads((out / 'final.json').read_text())
    path = out / final['runs'][0]
    record = json.loads(path.read_text())
    record['hyperparameters']['l2_weight'] *= 2  # Another configuration.
    path.write_text(json.dumps(record))
    code, _, err = cli(capsys, 'tune', data, *TUNE, '--trials', 2,
                       '--output', out)
    assert code == 2
    assert 'holds another run than the one asked for' in one_line(err)
    assert 'config_sha256' in err
    path.write_text('{"trial": ')  # Half a file.
    code, _, err = cli(capsys, 'tune', data, *TUNE, '--trials', 2,
                       '--output', out)
    assert code == 2 and 'not a readable run record' in one_line(err)


def test_another_study_name_and_an_empty_database_are_refused(tmp_path,
                                                             capsys):
    data, out = dataset(tmp_path), tmp_path / 'rw'
    assert cli(capsys, 'tune', data, *TUNE, '--trials', 2, '--output',
               out)[0] == 0
    code, _, err = cli(capsys, 'tune', data, *TUNE, '--trials', 2,
                       '--output', out, '--study-name', 'other')
    assert code == 2 and "holds the study 'mf-tiny'" in one_line(err)
    shutil.move(out / 'study.db', tmp_path / 'kept.db')
    (out / 'study.db').write_bytes(b'')  # Empty: would start a new study.
    trials = sorted(p.name for p in (out / 'trials').iterdir())
    code, _, err = cli(capsys, 'tune', data, *TUNE, '--trials', 2,
                       '--output', out)
    assert code == 2 and 'does not have that study' in one_line(err)
    assert sorted(p.name for p in (out / 'trials').iterdir()) == trials
    (out / 'study.db').write_bytes(b'not a database at all' * 10)
    code, _, err = cli(capsys, 'tune', data, *TUNE, '--trials', 2,
                       '--output', out)
    assert code == 2 and 'not a readable Optuna study' in one_line(err)


def test_the_winner_waits_for_the_trials_of_other_processes(tmp_path):
    from diffkg_pyg.train.tuning.study import wait_for_running
    storage = f'sqlite:///{tmp_path}/study.db'
    study = optuna.create_study(storage=storage, direction='maximize')
    running = study.ask()  # Another process's trial, still running.
    done = []
    thread = threading.Thread(target=lambda: done.append(
        wait_for_running(optuna.load_study(study_name=study.study_name,
                                           storage=storage), poll=0.05)))
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive() and not done  # It waits.
    study.tell(running, 1.0)
    thread.join(timeout=30)
    assert done == [None]
