r"""What the README shows works: its commands that finish in seconds run,
its Python example runs, and its picture of the code matches the files."""
import os.path as osp
import re
import shlex
import warnings

import pytest

from diffkg_pyg.cli import main

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
with open(osp.join(ROOT, 'README.md')) as f:
    README = f.read()


def blocks(language):
    r"""The fenced blocks of :obj:`language` ('' for plain ones)."""
    out, current = [], None
    for line in README.splitlines(keepends=True):
        if line.startswith('```'):
            if current is None:
                current = [line[3:].strip()]
            else:
                if current[0] == language:
                    out.append(''.join(current[1:]))
                current = None
        elif current is not None:
            current.append(line)
    return out


def quick_commands():
    # `diffkg-pyg models ...` and `diffkg-pyg stats synthetic`: seconds.
    out = []
    for block in blocks('bash'):
        for line in block.splitlines():
            argv = shlex.split(line, comments=True)
            if argv[:1] == ['diffkg-pyg'] and argv[1] in ('models', 'stats'):
                out.append(argv[1:])
    return out


def test_the_two_commands_come_first():
    lines = README.splitlines()
    assert len(lines) <= 250
    commands = [i for i, line in enumerate(lines)
                if line.startswith('python3 -m venv .venv')]
    assert len(commands) == 2 and max(commands) < 60
    with open(osp.join(ROOT, '.ci', 'run')) as f:
        assert lines[commands[1]] in f.read()  # CI runs the test command.


@pytest.mark.parametrize('argv', quick_commands(),
                         ids=lambda argv: ' '.join(argv))
def test_quick_commands_run(argv, capsys):
    assert main(argv) == 0
    assert capsys.readouterr().out.strip()


def test_python_example_runs(capsys):
    (code, ) = blocks('python')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)  # A cold test user.
        exec(compile(code, 'README.md', 'exec'), {})
    assert capsys.readouterr().out.splitlines()[-1] == 'torch.Size([2, 20])'


def test_the_code_layout_matches_the_files():
    (tree, ) = [b for b in blocks('') if b.startswith('diffkg_pyg/')]
    folders = ['']
    for line in tree.splitlines():
        indent = (len(line) - len(line.lstrip())) // 2
        names = line.split('  ')[0].split() if indent else [line.split()[0]]
        folders = folders[:indent + 1]
        for name in names:
            path = osp.join(ROOT, *folders[1:indent + 1], name)
            assert osp.exists(path), path
            if name.endswith('/'):
                folders = folders[:indent + 1] + [name.rstrip('/')]
    # Every module of train/ is in the picture:
    import os
    shown = set(re.findall(r'[a-z_]+\.py|[a-z_]+/', tree))
    for name in os.listdir(osp.join(ROOT, 'diffkg_pyg', 'train')):
        if name.endswith('.py') and name != '__init__.py' or \
                osp.isdir(osp.join(ROOT, 'diffkg_pyg', 'train', name)) and \
                not name.startswith('__'):
            assert name in shown or name + '/' in shown, name
