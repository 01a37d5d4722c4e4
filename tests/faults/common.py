r"""Helpers of the fault-injection suite: a tiny dataset, the command line
in this process (its exit status and one-line message) or in a
subprocess (for what could crash the interpreter)."""
import os
import subprocess
import sys

from diffkg_pyg.cli import main
from tests.conftest import write_kgat_folder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
#: A run of a fraction of a second on the tiny dataset.
QUICK = ['--model', 'mf', '--epochs', '1', '--patience', '1']


def dataset(tmp_path, name='tiny'):
    r"""A small dataset folder in the KGAT layout (24 users, 30 items)."""
    folder = tmp_path / name
    if not folder.exists():
        write_kgat_folder(folder)
    return str(folder)


def cli(capsys, *argv):
    r"""Runs the command line here; returns its exit status, standard
    output and standard error."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    r"""The error line of a failed command, checked to be alone (no
    traceback)."""
    lines = [line for line in err.splitlines()
             if line.startswith('diffkg-pyg: error:')]
    assert len(lines) == 1, err
    assert 'Traceback' not in err, err
    return lines[0]


def run_python(code: str, *args, timeout: float = 120, cwd=None):
    r"""Runs :obj:`code` in a new interpreter (a crash there is an exit
    status here); returns the completed process."""
    env = {**os.environ, 'PYTHONPATH': ROOT}
    return subprocess.run([sys.executable, '-c', code, *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env=env)
