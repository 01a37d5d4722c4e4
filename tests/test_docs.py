r"""The documentation matches the package: every public name of every
namespace's ``__all__`` is in the API reference page of that namespace."""
import importlib
import os.path as osp
import re

import pytest

DOCS = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'docs')
PAGES = {
    'diffkg_pyg': 'top.rst',
    'diffkg_pyg.data': 'data.rst',
    'diffkg_pyg.nn': 'nn.rst',
    'diffkg_pyg.nn.models': 'nn.rst',
    'diffkg_pyg.nn.conv': 'nn.rst',
    'diffkg_pyg.train': 'train.rst',
    'diffkg_pyg.train.recipes': 'train.rst',
    'diffkg_pyg.train.tuning': 'train.rst',
    'diffkg_pyg.evaluation': 'utilities.rst',
    'diffkg_pyg.optim': 'utilities.rst',
    'diffkg_pyg.distributed': 'utilities.rst',
    'diffkg_pyg.utils': 'utilities.rst',
    'diffkg_pyg.csr': 'utilities.rst',
    'diffkg_pyg.files': 'utilities.rst',
    'diffkg_pyg.process': 'utilities.rst',
    'diffkg_pyg.hyperparameters': 'train.rst',
    'diffkg_pyg.ranges': 'train.rst',
}


@pytest.mark.parametrize('namespace', sorted(PAGES))
def test_every_public_name_is_in_the_api_reference(namespace):
    with open(osp.join(DOCS, 'api', PAGES[namespace])) as f:
        page = f.read()
    names = importlib.import_module(namespace).__all__
    if f'automodule:: {namespace}\n' in page and \
            ':no-members:' not in page.split(f'automodule:: {namespace}')[1]:
        return  # Every member documented by automodule.
    words = set(re.findall(r'[A-Za-z_][A-Za-z_0-9]*', page))
    assert [n for n in names if n not in words] == []


def test_every_api_page_is_in_the_toctree():
    with open(osp.join(DOCS, 'api', 'index.rst')) as f:
        index = f.read()
    for page in set(PAGES.values()):
        assert page[:-4] in index.split()
