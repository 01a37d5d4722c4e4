r"""Sphinx configuration of the diffkg_pyg documentation.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (the ``[docs]``
extra). The hyper-parameter tables of the models guide are written here
from the models' declarations (``_generated/``), so they cannot drift from
the code.
"""
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

import diffkg_pyg  # noqa: E402
from diffkg_pyg.train import MODELS, TRAIN_SETTINGS, get_recipe  # noqa: E402

project = 'diffkg_pyg'
author = 'the diffkg_pyg developers'
copyright = '2026, the diffkg_pyg developers'
release = diffkg_pyg.__version__
version = release

extensions = [
    'sphinx.ext.autodoc',
    'sphinx.ext.autosummary',
    'sphinx.ext.napoleon',
    'sphinx.ext.mathjax',
    'myst_parser',
]
source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
exclude_patterns = ['_build']
myst_enable_extensions = ['dollarmath']
myst_heading_anchors = 3
autosummary_generate = True
autodoc_member_order = 'bysource'
autodoc_typehints = 'none'  # The docstrings' Args: give the types.
autodoc_default_options = {'members': True, 'show-inheritance': True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
html_theme = 'alabaster'
html_static_path = []
suppress_warnings = ['myst.header']


def _cell(text) -> str:
    return str(text).replace('|', '\\|').replace('\n', ' ')


def _table(parameters) -> str:
    from diffkg_pyg.train.flags import format_space
    rows = ['| flag | type | default | valid | aliases | tune space | help |',
            '|---|---|---|---|---|---|---|']
    for p in parameters:
        valid = (str(p.range) if p.range is not None else
                 ', '.join(map(str, p.choices)) if p.choices else '')
        aliases = ' '.join(f'`--{a}`' for a in p.aliases)
        space = '' if p.space is None else f'`{format_space(p.space)}`'
        rows.append('| ' + ' | '.join(_cell(c) for c in [
            f'`{p.flag}`', p.type_name, f'`{p.default!r}`', valid, aliases,
            space, p.help]) + ' |')
    return '\n'.join(rows) + '\n'


def write_hyperparameter_tables() -> None:
    r"""``_generated/hyperparameters.md``: every registered model's
    declared hyper-parameters, presets and the training settings."""
    out = ['# Hyper-parameters of every model\n',
           'Written from the declarations in the recipes when the docs are '
           'built (`diffkg-pyg models NAME` prints the same).\n']
    for name in MODELS:
        recipe = get_recipe(name)
        out.append(f'## `{name}`\n\n{recipe.description}.\n')
        out.append(_table(recipe.hyperparameters))
        for preset, values in recipe.presets.items():
            shown = ', '.join(f'`{k}={v!r}`' for k, v in values.items())
            out.append(f'- preset `{preset}`: {shown or "the defaults"}')
        out.append('')
    out.append('## Training settings (every model)\n')
    out.append(_table(TRAIN_SETTINGS))
    folder = osp.join(ROOT, 'docs', '_generated')
    os.makedirs(folder, exist_ok=True)
    text = '\n'.join(out)
    path = osp.join(folder, 'hyperparameters.md')
    if not osp.isfile(path) or open(path).read() != text:
        with open(path, 'w') as f:
            f.write(text)


write_hyperparameter_tables()
