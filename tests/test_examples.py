import json
import os.path as osp
import subprocess
import sys

from diffkg_pyg.cli import main

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_custom_model_trains_through_the_package_trainer(kgat_folder,
                                                         tmp_path):
    output = tmp_path / 'mf.json'
    subprocess.run([sys.executable, osp.join(ROOT, 'examples',
                                             'custom_model.py'),
                    str(kgat_folder), '--epochs', '3', '--output',
                    str(output), '--checkpoint-dir', str(tmp_path / 'runs'),
                    '--embedding-dim', '4', '--val-ratio', '0.3'],
                   check=True, capture_output=True)
    result = json.loads(output.read_text())
    assert result['model'] == 'custom-mf' and result['epochs_run'] == 3
    assert (tmp_path / 'runs' / 'last.pt').exists()
    # The same record as `diffkg-pyg train --output`:
    reference = tmp_path / 'lightgcn.json'
    assert main(['train', str(kgat_folder), '--model', 'lightgcn',
                 '--epochs', '1', '--val-ratio', '0.3', '--output',
                 str(reference)]) == 0
    assert set(result) == set(json.loads(reference.read_text()))
    assert set(result['settings']) == set(json.loads(
        reference.read_text())['settings'])


def test_pyg_loop_trains_saves_and_loads(tmp_path):
    # DiffKG and LightGCN in hand-written PyG loops on a RandomLinkSplit of
    # a HeteroData; the hand-trained DiffKG, saved and loaded, recommends
    # the same items (the script exits 1 otherwise).
    output = tmp_path / 'diffkg.pt'
    out = subprocess.run([sys.executable, osp.join(ROOT, 'examples',
                                                   'pyg_loop.py'),
                          '--epochs', '2', '--output', str(output)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'DiffKG   test recall@20' in out.stdout
    assert 'LightGCN test recall@20' in out.stdout
    assert 'recommends the same items: True' in out.stdout
    assert output.exists()
