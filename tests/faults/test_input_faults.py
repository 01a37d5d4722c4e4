r"""Faults of the inputs: a PyG user's graphs given to ``from_pyg`` and
dataset files; every one refused with its place named, or read as its
author meant, never moved silently."""
import pytest
import torch
from torch_geometric.data import HeteroData

from diffkg_pyg.data import from_pyg, load_dataset
from tests.faults.common import QUICK, cli, dataset, one_line

RATES = ('user', 'rates', 'item')


def graph(num_users=4, num_items=10, num_entities=6):
    data = HeteroData()
    data['user'].num_nodes = num_users
    data['item'].num_nodes = num_items
    data['entity'].num_nodes = num_entities
    store = data[RATES]
    store.edge_index = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]])
    store.val_edge_index = torch.tensor([[0, 1], [4, 5]])
    store.test_edge_index = torch.tensor([[2, 3], [6, 7]])
    data['item', 'is', 'entity'].edge_index = torch.tensor([[0, 1], [0, 1]])
    data['entity', 'r', 'entity'].edge_index = torch.tensor([[0, 2], [3, 4]])
    return data


def _item_beyond(data):
    data[RATES].test_edge_index = torch.tensor([[2, 0], [13, 7]])


def _float_ids(data):
    data[RATES].edge_index = data[RATES].edge_index.float() + 0.5


def _bool_ids(data):
    data[RATES].edge_index = data[RATES].edge_index > 0


def _three_rows(data):
    data[RATES].edge_index = torch.tensor([[0, 1], [0, 1], [0, 1]])


def _one_dim(data):
    data[RATES].edge_index = torch.tensor([0, 1, 2])


def _negative_entity(data):
    data['entity', 'r', 'entity'].edge_index = torch.tensor([[0, -1],
                                                             [3, 4]])


def _negative_link(data):
    data['item', 'is', 'entity'].edge_index = torch.tensor([[0, 1],
                                                            [0, -1]])


def _nan_weight(data):
    data[RATES].edge_weight = torch.tensor([1.0, float('nan'), 1.0, 1.0])


@pytest.mark.parametrize('edit, message', [
    (_item_beyond, r'test_edge_index\[1, 0\] = 13 is not an item id'),
    (_float_ids, 'must hold integer ids'),
    (_bool_ids, 'must hold integer ids'),
    (_three_rows, r'must have shape \[2, num_edges\]'),
    (_one_dim, r'must have shape \[2, num_edges\]'),
    (_negative_entity, r'edge_index\[0, 1\] = -1 is not an entity id'),
    (_negative_link, r'edge_index\[1, 1\] = -1 is not an entity id'),
    (_nan_weight, r'edge_weight\[1\] = nan'),
])
def test_from_pyg_refuses_before_decoding(edit, message):
    data = graph()
    from_pyg(data, item_entity=('item', 'is', 'entity'))  # Valid as is.
    edit(data)
    with pytest.raises(ValueError, match=message):
        from_pyg(data, item_entity=('item', 'is', 'entity'))


def test_from_pyg_refuses_a_bad_item_entity_tensor():
    data = graph()
    for link, message in ((torch.tensor([0.0] * 10), 'integer entity ids'),
                          (torch.tensor([-2] + [-1] * 9), 'neither an '
                           'entity id nor -1')):
        with pytest.raises(ValueError, match=message):
            from_pyg(data, item_entity=link)


def test_item_features_must_be_finite():
    from diffkg_pyg.data import validate
    data = load_dataset('synthetic', log=False)
    data['item'].x = torch.ones(data['item'].num_nodes, 2)
    data['item'].x[3, 1] = float('inf')
    with pytest.raises(ValueError, match=r"data\['item'\].x\[3\]"):
        validate(data)


@pytest.mark.parametrize('layout', ['bom', 'cr'])
def test_bom_and_cr_files_read_as_meant(tmp_path, layout):
    plain = dataset(tmp_path)
    other = tmp_path / layout
    other.mkdir()
    for name in ('train.txt', 'test.txt', 'kg_final.txt'):
        text = (tmp_path / 'tiny' / name).read_bytes()
        text = (b'\xef\xbb\xbf' + text if layout == 'bom' else
                text.replace(b'\n', b'\r'))
        (other / name).write_bytes(text)
    a = load_dataset(plain, log=False)
    b = load_dataset(str(other), log=False)
    from diffkg_pyg.train.checkpoint import fingerprint
    assert fingerprint(a) == fingerprint(b)


def test_ids_far_beyond_the_counts_are_refused(tmp_path, capsys):
    folder = tmp_path / 'sparse'
    dataset(tmp_path)
    folder.mkdir()
    for name in ('test.txt', 'kg_final.txt'):
        (folder / name).write_bytes((tmp_path / 'tiny' / name).read_bytes())
    train = (tmp_path / 'tiny' / 'train.txt').read_text()
    (folder / 'train.txt').write_text(train + '2147483600 1 2\n')
    code, _, err = cli(capsys, 'stats', folder)
    line = one_line(err)
    assert code == 2 and 'train.txt, line 25' in line
    assert 'user id 2147483600 is far beyond' in line


def test_paths_of_the_wrong_kind(tmp_path, capsys):
    data = dataset(tmp_path)
    code, _, err = cli(capsys, 'stats', f'{data}/train.txt')
    assert code == 2 and 'train.txt: is a file; DATA is a dataset folder' \
        in one_line(err)
    folder = tmp_path / 'folder-train'
    folder.mkdir()
    (folder / 'train.txt').mkdir()
    code, _, err = cli(capsys, 'stats', folder)
    assert code == 2 and 'train.txt: is a folder, not a file' in \
        one_line(err)


def test_test_items_never_trained_are_said(tmp_path, capsys):
    folder = tmp_path / 'unseen'
    folder.mkdir()
    (folder / 'train.txt').write_text('0 0 1 2\n1 1 2\n2 0 2\n')
    (folder / 'test.txt').write_text('0 3\n1 0\n2 1\n')
    (folder / 'kg_final.txt').write_text('0 0 4\n3 0 4\n')
    with pytest.warns(UserWarning, match=r'1 test item\(s\) never occur'):
        data = load_dataset(str(folder), log=False)
    assert data['item'].num_nodes == 4  # The authors' count, kept.


def test_a_damaged_processed_cache_is_rebuilt(tmp_path):
    data = dataset(tmp_path)
    first = load_dataset(data, log=False)
    cache = next((tmp_path / 'tiny' / 'processed').glob('data_*.pt'))
    cache.write_bytes(cache.read_bytes()[:100])
    with pytest.warns(UserWarning, match='unreadable processed cache'):
        again = load_dataset(data, log=False)
    from diffkg_pyg.train.checkpoint import fingerprint
    assert fingerprint(again) == fingerprint(first)


@pytest.mark.parametrize('argv, message', [
    (['--noise-scale', 'nan'], 'noise_scale must be a finite number'),
    (['--kg-residual', 'inf'], 'kg_residual must be a finite number'),
    (['--kg-dropout', '1.5'], '--kg-dropout: kg_dropout must be in'),
    (['--denoiser-dropout', '-0.1'], '--denoiser-dropout: '),
    (['--seed', str(2**64)], '--seed: seed must be in'),
    (['--split-seed', str(2**64)], '--split-seed must be in'),
    (['--dist-timeout', 'nan'], 'invalid finite number value'),
    (['--val-ratio', 'nan'], 'invalid finite number value'),
    (['--threads', '1000000'], '--threads must be in'),
    (['--device', 'cuda'], '--device cuda: '),
    (['--device', 'tpu9'], '--device tpu9: not a torch device'),
])
def test_bad_flags_are_one_line_before_loading(tmp_path, capsys, argv,
                                               message):
    code, out, err = cli(capsys, dataset(tmp_path), *QUICK[2:], *argv)
    assert code == 2 and message in one_line(err)
    assert 'users' not in out  # Refused before the data was loaded.


@pytest.mark.parametrize('argv, message', [
    (['--timeout', 'inf'], 'invalid finite number value'),
    (['--heartbeat', 'nan'], 'invalid finite number value'),
    (['--heartbeat', '0'], '--heartbeat must be > 0'),
])
def test_bad_tune_flags_are_one_line(tmp_path, capsys, argv, message):
    pytest.importorskip('optuna')
    code, _, err = cli(capsys, 'tune', dataset(tmp_path), '--trials', 1,
                       *argv)
    assert code == 2 and message in one_line(err)


def test_a_toml_integer_for_a_boolean(tmp_path, capsys):
    # 0 and 1 are false and true, as the authors' configs write them (and
    # as on the command line); any other number is refused.
    config = tmp_path / 'c.toml'
    config.write_text('model = "diffrec"\nnorm = 2\n')
    code, _, err = cli(capsys, dataset(tmp_path), '--config', config)
    assert code == 2 and 'norm must be a bool (got 2)' in one_line(err)
    config.write_text('model = "diffrec"\nnorm = 1\ntime_channels = 4\n')
    output = tmp_path / 'r.json'
    assert cli(capsys, dataset(tmp_path), '--config', config, *QUICK[2:],
               '--output', output)[0] == 0
    import json
    assert json.loads(output.read_text())['hyperparameters']['norm'] is True
