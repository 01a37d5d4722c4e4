r"""The dry run of ``benchmarks/gpu_check.sh`` on the CPU: every step of the
GPU check (the CUDA tests, two epochs, the speed step, a 2-process
torchrun over gloo) runs, so that the script cannot rot before a GPU runs
it."""
import json
import os.path as osp
import shutil
import subprocess
import sys

import pytest

from tests.train.test_every_model import ROOT

SCRIPT = osp.join(ROOT, 'benchmarks', 'gpu_check.sh')


def gpu_check(*args, timeout=480):
    return subprocess.run(['bash', SCRIPT, '--python', sys.executable,
                           *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow  # About a minute: the CUDA tests on the CPU, four runs.
def test_gpu_check_dry_run_on_the_cpu(tmp_path):
    out = tmp_path / 'gpu'
    process = gpu_check('--device', 'cpu', '--smoke', '--out', str(out))
    assert process.returncode == 0, process.stdout[-4000:] + \
        process.stderr[-2000:]
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['device'] == 'cpu' and summary['smoke'] is True
    assert [s['step'] for s in summary['steps']] == [
        'env', 'tests', 'diffkg-1epoch', 'lightgcn-1epoch', 'speed-step',
        'nccl']
    assert all(s['exit'] == 0 and s['seconds'] <= s['limit']
               for s in summary['steps'])
    # The CUDA-marked tests ran (on the CPU), none skipped or failed:
    log = (out / 'tests.log').read_text()
    assert ' passed' in log and 'skipped' not in log and 'failed' not in log
    diffkg = json.loads((out / 'diffkg-1epoch.json').read_text())
    assert diffkg['device'] == 'cpu' and diffkg['noise_columns_used'] == \
        16384
    assert {'diffusion', 'rebuild', 'recommendation'} <= \
        set(diffkg['phase_seconds'])
    assert json.loads((out / 'lightgcn-1epoch.json').read_text())[
        'model'] == 'lightgcn'
    step = [json.loads(line) for line in
            (out / 'speed-step.jsonl').read_text().splitlines()]
    assert [r['implementation'] for r in step] == [
        'package', 'reference', 'package/reference', 'floor']
    assert step[0]['device'] == 'cpu' and step[0]['step_s'] > 0
    # The step against the kept reference: one float, the largest
    # gradient difference, and the speed-up.
    assert isinstance(step[2]['max_abs_diff'], float)
    assert step[2]['max_abs_diff'] < 1e-5 and step[2]['ratio'] > 0
    assert json.loads((out / 'nccl.json').read_text())['world_size'] == 2


@pytest.mark.parametrize('args, message', [
    (['--data', '/nonexistent'], 'no dataset at /nonexistent'),
    (['--frobnicate'], 'unknown argument --frobnicate'),
    pytest.param(['--device', 'cuda', '--data', ROOT], 'no NVIDIA GPU here',
                 marks=pytest.mark.skipif(shutil.which('nvidia-smi') is not
                                          None, reason='a GPU machine')),
])
def test_gpu_check_refuses_bad_arguments(tmp_path, args, message):
    process = gpu_check('--device', 'cpu', '--out', str(tmp_path / 'o'),
                        *args, timeout=120)
    assert process.returncode == 2 and message in process.stderr
