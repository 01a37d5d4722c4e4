r"""A saved model's outputs in the dataset's own ids: the user file, the
top-K file, the embeddings and the metrics of a test set (matched by id
across a renumbering)."""
import numpy as np
import pytest
import torch

from diffkg_pyg.data import DataFormatError, load_dataset
from diffkg_pyg.train import (
    Trainer,
    evaluate_saved,
    get_recipe,
    load_model,
    read_users,
    write_embeddings,
    write_top_k,
)

USERS = [f'u{u:02d}' for u in range(16)]
ITEMS = [f'i{i:02d}' for i in range(20)]


def write_inter(folder, extra_test=()):
    # A RecBole folder without a KG: 6 train and 2 test items per user.
    rng = np.random.default_rng(0)
    rows = {'train': [], 'test': []}
    for u in USERS:
        items = rng.permutation(len(ITEMS))
        rows['train'] += [(u, ITEMS[i]) for i in items[:6]]
        rows['test'] += [(u, ITEMS[i]) for i in items[6:8]]
    rows['test'] += list(extra_test)
    folder.mkdir()
    for part, pairs in rows.items():
        (folder / f'd.{part}.inter').write_text(
            'user_id:token\titem_id:token\n' +
            ''.join(f'{u}\t{i}\n' for u, i in pairs))
    return str(folder)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('outputs')
    folder = write_inter(root / 'd')
    data = load_dataset(folder, log=False)
    trainer = Trainer(get_recipe('mf')(embedding_dim=8), data, seed=0,
                      log=lambda line: None)
    result = trainer.fit(2, patience=2)
    trainer.save_model(str(root / 'mf.pt'))
    return root, data, result, load_model(str(root / 'mf.pt'))


def test_read_users(trained, tmp_path):
    _, _, _, model = trained
    path = tmp_path / 'users.txt'
    path.write_text('user_id\n# a comment\nu03\n\nu01\nu03\n')
    assert read_users(str(path), model).tolist() == [3, 1]
    path.write_text('u03\nnobody\n')
    with pytest.raises(DataFormatError, match=r'line 2: user .nobody.'):
        read_users(str(path), model)
    path.write_text('# nobody\n')
    with pytest.raises(DataFormatError, match='lists no user'):
        read_users(str(path), model)


@pytest.mark.parametrize('k', [3, 20])
@pytest.mark.parametrize('exclude_train', [True, False])
@pytest.mark.parametrize('search', ['exact', 'mips'])
def test_top_k_file(trained, tmp_path, k, exclude_train, search):
    if search == 'mips':
        pytest.importorskip('faiss')
    _, data, _, model = trained
    path = tmp_path / 'topk.tsv'
    users = torch.tensor([4, 0])
    rows = write_top_k(str(path), model, users, k, exclude_train,
                       batch_size=1, progress=False, search=search)
    lines = [r.split('\t') for r in path.read_text().splitlines()]
    assert lines[0] == ['user', 'rank', 'item', 'score'] and \
        len(lines) == rows + 1
    train = data['user', 'item'].edge_index
    scores = model.scores(users)
    for row, user in enumerate(users.tolist()):
        mine = [r for r in lines[1:] if r[0] == USERS[user]]
        seen = set(train[1, train[0] == user].tolist())
        # Every unseen item (14 here) when k is larger, never -1.
        expected = min(k, 20 - len(seen)) if exclude_train else k
        assert [int(r[1]) for r in mine] == list(range(1, expected + 1))
        items = [ITEMS.index(r[2]) for r in mine]
        assert (not exclude_train) or not seen & set(items)
        ranked = [i for i in scores[row].argsort(descending=True).tolist()
                  if not (exclude_train and i in seen)][:expected]
        assert items == ranked
        assert [float(r[3]) for r in mine] == pytest.approx(
            scores[row, ranked].tolist(), rel=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['topk.tsv']


def test_embeddings_file_gives_the_scores(trained, tmp_path):
    _, _, _, model = trained
    write_embeddings(str(tmp_path / 'e.npz'), model)
    out = np.load(tmp_path / 'e.npz')
    assert out['user_id'].tolist() == USERS and \
        out['item_id'].tolist() == ITEMS
    scores = out['user_embedding'] @ out['item_embedding'].T
    assert np.allclose(scores, model.scores(torch.arange(16)).numpy(),
                       atol=1e-6)


def test_evaluate_gives_the_runs_test_metrics(trained):
    _, data, result, model = trained
    out = evaluate_saved(model, data)
    assert out['test'] == result.test and out['valid'] == result.valid
    assert out['same_dataset'] is True and out['pairs_left_out'] == 0


def test_evaluate_matches_users_and_items_by_id(trained, tmp_path):
    # An item token sorting first renumbers every item; its pair (the
    # model does not know it) is left out, the rest ranked as before.
    _, _, result, model = trained
    folder = write_inter(tmp_path / 'd', extra_test=[('u00', 'i-new')])
    other = load_dataset(folder, log=False)
    assert other['item'].raw_id[0] == 'i-new'
    with pytest.warns(UserWarning, match='1 pair'):
        out = evaluate_saved(model, other)
    assert out['test'] == result.test
    assert out['same_dataset'] is False and out['pairs_left_out'] == 1
