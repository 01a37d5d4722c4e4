r"""``diffkg-pyg recommend`` and ``evaluate`` on a saved model: what they
print, and one line (exit 2) for every bad input."""
import importlib.util
import json
import sys

import pytest

from diffkg_pyg.cli import main
from tests.conftest import write, write_kgat_folder


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp('commands')
    folder = root / 'tiny'
    write_kgat_folder(folder)
    for name in ('mf', 'diffrec'):
        assert main(['train', str(folder), '--model', name, '--epochs', '1',
                     '--save-model', str(root / f'{name}.pt'),
                     '--output', str(root / f'{name}.json')]) == 0
    return root, folder


def test_recommend_and_evaluate(saved, tmp_path, capsys):
    root, folder = saved
    capsys.readouterr()
    users = write(tmp_path / 'users.txt', '3\n1\n')
    out = tmp_path / 'topk.tsv'
    assert main(['recommend', str(root / 'mf.pt'), '--users', users,
                 '--k', '4', '--output', str(out),
                 '--embeddings', str(tmp_path / 'e.npz')]) == 0
    printed = capsys.readouterr().out
    assert '8 recommendations for 2 users (top 4)' in printed
    assert [r.split('\t')[0] for r in out.read_text().splitlines()] == \
        ['user'] + ['3'] * 4 + ['1'] * 4
    if importlib.util.find_spec('faiss'):  # The same lists through faiss:
        assert main(['recommend', str(root / 'mf.pt'), '--users', users,
                     '--k', '4', '--output', str(tmp_path / 'mips.tsv'),
                     '--search', 'mips']) == 0
        exact, mips = (
            [r.split('\t')[:3] for r in (tmp_path / f).read_text().split(
                '\n')] for f in ('topk.tsv', 'mips.tsv'))
        assert exact == mips
        capsys.readouterr()
    assert main(['evaluate', str(root / 'mf.pt'), str(folder)]) == 0
    table = capsys.readouterr().out.splitlines()
    run = json.loads((root / 'mf.json').read_text())
    assert table[0].split()[:4] == ['split', 'ndcg@10', 'ndcg@20',
                                    'ndcg@40']
    assert table[2].split()[2] == f'{run["test"]["ndcg@20"]:.4f}'
    # Another split of the same files: said, and still evaluated.
    assert main(['evaluate', str(root / 'mf.pt'), str(folder),
                 '--split-seed', '1']) == 0
    assert 'is not the dataset' in capsys.readouterr().err


@pytest.mark.parametrize('argv, message', [
    (['recommend', '{root}/mf.pt'], 'give --output FILE'),
    (['recommend', '{root}/nope.pt', '-o', '{tmp}/t.tsv'], 'nope.pt'),
    (['recommend', '{root}/mf.pt', '--k', '0', '-o', '{tmp}/t.tsv'],
     "--k: invalid positive integer value: '0'"),
    (['recommend', '{root}/mf.pt', '--users', '{tmp}/bad.txt', '-o',
      '{tmp}/t.tsv'], "bad.txt, line 2: user '99' is not a user"),
    (['recommend', '{root}/diffrec.pt', '--embeddings', '{tmp}/e.npz'],
     'diffrec does not score by inner products'),
    (['recommend', '{root}/mf.pt', '-o', '{tmp}'], 'is a folder'),
    (['recommend', '{root}/diffrec.pt', '--search', 'mips', '-o',
      '{tmp}/t.tsv'], 'embeddings (MIPS search); use the exact'),
    (['evaluate', '{root}/mf.pt', 'synthetic'],
     'the dataset has 800 users, the model 24'),
])
def test_bad_input_is_one_line(saved, tmp_path, capsys, argv, message):
    root, _ = saved
    write(tmp_path / 'bad.txt', '3\n99\n')
    argv = [a.format(root=root, tmp=tmp_path) for a in argv]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith('diffkg-pyg: error: ') and message in err, err
    assert err.count('\n') == 1
    assert not (tmp_path / 't.tsv').exists()


def test_mips_without_faiss_is_one_line_before_the_model_loads(
        saved, tmp_path, capsys, monkeypatch):
    root, _ = saved
    monkeypatch.setitem(sys.modules, 'faiss', None)  # import faiss fails
    capsys.readouterr()
    assert main(['recommend', str(tmp_path / 'no-such-model.pt'),
                 '--search', 'mips', '-o', str(tmp_path / 't.tsv')]) == 2
    err = capsys.readouterr().err
    assert err == ('diffkg-pyg: error: recommend --search mips: MIPS top-K '
                   'needs faiss: pip install faiss-cpu (or diffkg-pyg[knn])'
                   '\n')
