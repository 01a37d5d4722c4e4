import ctypes.util
import subprocess
import sys
import textwrap

import pytest

# In a fresh process, after retain_freed_memory(): allocating, filling and
# freeing 256 MiB (65,536 pages of 4 KiB) over and over faults its pages
# in at most twice (the heap may grow by a second block before it reuses
# them), then never again; returned to the system, each round faults them
# all in again.
SCRIPT = textwrap.dedent('''
    import resource, sys
    import torch
    from diffkg_pyg.process import retain_freed_memory

    applied = retain_freed_memory()
    size = 2**26  # float32: 256 MiB.
    faults = []
    for _ in range(8):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x = torch.ones(size)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt -
                      before)
        del x
    print(applied, sum(faults[4:]))
''')


@pytest.mark.skipif(not sys.platform.startswith('linux') or
                    'libc.so' not in str(ctypes.util.find_library('c')),
                    reason='glibc only')
def test_freed_memory_is_reused_without_page_faults():
    out = subprocess.run([sys.executable, '-c', SCRIPT], check=True,
                         capture_output=True, text=True).stdout.split()
    assert out[0] == 'True'
    assert int(out[1]) < 2**16  # Without it: about 4 x 65,536.


@pytest.mark.parametrize('device', ['cuda', 'cuda:1', 'mps'])
def test_freed_memory_settings_are_left_alone_off_the_cpu(monkeypatch,
                                                         device):
    import ctypes

    from diffkg_pyg.process import retain_freed_memory

    def refuse(*args):
        raise AssertionError('mallopt was looked up')

    monkeypatch.setattr(ctypes, 'CDLL', refuse)
    assert retain_freed_memory(device) is False
