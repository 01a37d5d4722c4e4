r"""The package's version and, in a git checkout, the commit of its code
(recorded in every result, so that a reader can tell what ran)."""
import functools
import os.path as osp
import subprocess
from typing import Optional

__all__ = ['__version__', 'package_commit']

__version__ = '0.3.0'


@functools.cache
def package_commit() -> Optional[str]:
    r"""The commit of the checkout the package runs from, with ``+dirty``
    when the package's files differ from it; :obj:`None` outside a git
    checkout (an installed wheel) or without git."""
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    if not osp.exists(osp.join(root, '.git')):
        return None
    try:
        head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=root,
                              text=True, capture_output=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(['git', 'diff', '--quiet', 'HEAD', '--',
                                'diffkg_pyg'], cwd=root, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ('+dirty' if dirty.returncode else '')
