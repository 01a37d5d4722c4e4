r"""Every command that the README, the docs and BENCHMARKS.md show names a
script and flags that exist: ``python benchmarks/NAME.py --flag ...``
against the flags the script (and ``benchmarks/common.py``, which it may
import) declares, ``diffkg-pyg COMMAND --flag ...`` against the command
line's parsers (``train`` and ``tune`` with the flags of the model named
by ``--model``)."""
import glob
import os.path as osp
import re

import pytest

from diffkg_pyg.cli import build_parser, build_train_parser
from diffkg_pyg.train import get_recipe
from diffkg_pyg.train.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PAGES = ['README.md', 'BENCHMARKS.md',
         *sorted(osp.relpath(p, ROOT) for p in glob.glob(
             osp.join(ROOT, 'docs', '**', '*.md'), recursive=True)
             if '_build' not in p)]
COMMAND = re.compile(r'(python benchmarks/(\w+)\.py|diffkg-pyg (\w[\w-]*))'
                     r'([^|;&#>`\n]*)')
FLAG = re.compile(r'(?<![\w-])(--[A-Za-z][\w-]*)')


def code_of(text):
    r"""The code of a Markdown page, one string per fenced line (lines
    ending in a backslash joined) and per inline span (across lines)."""
    out, fenced, rest = [], False, []
    for line in text.replace('\\\n', ' ').splitlines():
        if line.lstrip().startswith('```'):
            fenced = not fenced
        elif fenced:
            out.append(line)
        else:
            rest.append(line)
    out += [span.replace('\n', ' ') for span in
            re.findall(r'`([^`]+)`', '\n'.join(rest))]
    return out


def commands():
    for page in PAGES:
        with open(osp.join(ROOT, page), encoding='utf-8') as f:
            for code in code_of(f.read()):
                for match in COMMAND.finditer(code):
                    yield page, match.group(0).strip()


def script_flags(name):
    with open(osp.join(ROOT, 'benchmarks', f'{name}.py')) as f:
        source = f.read()
    if re.search(r'^from common import', source, re.M):
        with open(osp.join(ROOT, 'benchmarks', 'common.py')) as f:
            source += f.read()
    return set(re.findall(r"""['"](--[A-Za-z][\w-]*)['"]""", source))


def cli_flags(command, words):
    if command in ('train', 'tune'):
        model = words[words.index('--model') + 1] if '--model' in words \
            else 'diffkg'
        # A placeholder (--model NAME): the flags of any model.
        models = sorted(MODELS) if model.isupper() else [model]
        parsers = [build_train_parser(get_recipe(m), command)
                   for m in models]
    else:
        parsers = [SUBCOMMANDS[command]]
    return {flag for parser in parsers for action in parser._actions
            for flag in action.option_strings}


SHOWN = sorted(set(commands()))
SUBCOMMANDS = build_parser()._subparsers._group_actions[0].choices


def test_the_pages_show_commands():
    assert len(SHOWN) > 50 and {p for p, _ in SHOWN} >= {
        'README.md', 'BENCHMARKS.md'}


@pytest.mark.parametrize('page, command', SHOWN)
def test_every_shown_command_exists(page, command):
    match = COMMAND.match(command)
    script, sub = match.group(2), match.group(3)
    # What follows ' -- ' is passed on (to train), not the script's.
    arguments = match.group(4).split(' -- ')[0]
    words = arguments.split()
    if script is not None:
        assert osp.exists(osp.join(ROOT, 'benchmarks', f'{script}.py')), \
            f'{page}: {command}: no benchmarks/{script}.py'
        known = script_flags(script)
    else:
        assert sub in SUBCOMMANDS, f'{page}: {command}: no command {sub}'
        known = cli_flags(sub, words)
    unknown = [f for f in FLAG.findall(arguments) if f not in known]
    assert unknown == [], f'{page}: {command}'


def test_benchmarks_is_a_page_of_current_results():
    # Each table once with its command and commit (about 400 lines); the
    # history goes to benchmarks/notebook.md with its date.
    with open(osp.join(ROOT, 'BENCHMARKS.md'), encoding='utf-8') as f:
        text = f.read()
    lines = text.count('\n')
    assert lines <= 440, f'BENCHMARKS.md has {lines} lines'
    assert 'benchmarks/notebook.md' in text
    # No table is shown twice: a row appears once.
    rows = [r for r in text.splitlines()
            if r.startswith('| ') and not r.startswith('|---')]
    assert len(rows) == len(set(rows))
