r"""Filters and splits (:mod:`diffkg_pyg.data.prepare`): each against a
literal implementation, the KGAT layout through the table path unchanged
when nothing is asked, everything recorded (result, fingerprint) and shown
by ``stats``."""
import json

import numpy as np
import pytest
import torch

from diffkg_pyg.cli import main
from diffkg_pyg.data import (
    KG,
    USER_ITEM,
    DataFormatError,
    Preparation,
    load_dataset,
    statistics,
)
from diffkg_pyg.data.prepare import (
    Interactions,
    entity_core_mask,
    k_core_mask,
    prepare_interactions,
)
from diffkg_pyg.train.checkpoint import fingerprint
from tests.data.test_tabular import random_dataset, write_kgat


def literal_k_core(pairs, user_core, item_core):
    pairs = list(pairs)
    while True:
        users = {u: sum(1 for a, _ in pairs if a == u) for u, _ in pairs}
        items = {i: sum(1 for _, b in pairs if b == i) for _, i in pairs}
        kept = [(u, i) for u, i in pairs
                if users[u] >= user_core and items[i] >= item_core]
        if kept == pairs:
            return kept
        pairs = kept


@pytest.mark.parametrize('seed', range(3))
@pytest.mark.parametrize('cores', [(2, 2), (4, 1), (1, 5), (3, 3)])
def test_k_core_against_a_literal_loop(seed, cores):
    rng = np.random.default_rng(seed)
    user, item = rng.integers(0, 15, 60), rng.integers(0, 20, 60)
    keep = k_core_mask(user, item, *cores)
    assert list(zip(user[keep].tolist(), item[keep].tolist())) == \
        literal_k_core(zip(user.tolist(), item.tolist()), *cores)


@pytest.mark.parametrize('seed', range(3))
@pytest.mark.parametrize('core', [2, 3])
def test_entity_core_against_a_literal_loop(seed, core):
    rng = np.random.default_rng(seed)
    head, tail = rng.integers(0, 30, 50), rng.integers(0, 30, 50)
    num_items = 8
    kept = list(zip(head.tolist(), tail.tolist()))
    while True:
        ends = [e for pair in kept for e in pair]
        weak = {e for e in ends if e >= num_items and ends.count(e) < core}
        now = [(h, t) for h, t in kept if h not in weak and t not in weak]
        if now == kept:
            break
        kept = now
    keep = entity_core_mask(head, tail, num_items, core)
    assert list(zip(head[keep].tolist(), tail[keep].tolist())) == kept


def timed(seed=0, num_users=12, num_items=25, rows=150):
    rng = np.random.default_rng(seed)
    user, item = rng.integers(0, num_users, rows), rng.integers(0, num_items,
                                                               rows)
    return Interactions(user, item, np.zeros(rows, dtype=np.int64),
                        np.arange(1, rows + 1), ['d.inter'],
                        rating=rng.integers(1, 6, rows).astype(float),
                        time=rng.permutation(rows).astype(float))


def by_user(inter, rows):
    out = {}
    for r in rows.tolist():
        out.setdefault(int(inter.user[r]), []).append(r)
    return out


@pytest.mark.parametrize('ratio', [0.2, 0.5])
def test_the_temporal_user_split_holds_out_each_users_latest(ratio):
    inter = timed()
    out = prepare_interactions(inter, Preparation('temporal-user', ratio),
                               val_ratio=0.25)
    train, valid, test = (by_user(inter, r) for r in
                          (out.train, out.valid, out.test))
    rows = np.sort(np.concatenate([out.train, out.valid, out.test]))
    for u, all_rows in by_user(inter, rows).items():
        n, t = len(all_rows), inter.time
        want = min(int(np.floor(ratio * n + 0.5)), n - 1)
        assert len(test.get(u, [])) == want
        assert len(train[u]) >= 1
        if want:  # The test rows are the latest of the user's.
            assert min(t[test[u]]) > max(t[train[u] + valid.get(u, [])])
        if valid.get(u):
            assert min(t[valid[u]]) > max(t[train[u]])
    assert out.record['order'] == 'timestamp'


def test_the_temporal_global_split_cuts_once_in_time():
    inter = timed()
    out = prepare_interactions(inter, Preparation('temporal-global', 0.3),
                               val_ratio=0.2)
    t = inter.time
    assert t[out.test].min() > t[out.valid].max() > t[out.train].max()
    trained = set(inter.user[out.train].tolist())
    assert set(inter.user[out.test].tolist()) <= trained
    assert set(inter.user[out.valid].tolist()) <= trained
    dropped = out.record['removed']['no_earlier_interaction']
    kept = out.train.size + out.valid.size + out.test.size
    assert kept + dropped + out.record['removed']['duplicates'] == 150
    # The cut: the latest 30 % of the (de-duplicated) rows.
    assert out.test.size + dropped >= out.test.size


@pytest.mark.parametrize('with_time', [True, False])
def test_leave_one_out(with_time):
    inter = timed()
    if not with_time:
        inter.time = None
    out = prepare_interactions(inter, Preparation('leave-one-out'), seed=3)
    train, valid, test = (by_user(inter, r) for r in
                          (out.train, out.valid, out.test))
    for u in train:
        n = len(train[u]) + len(valid.get(u, [])) + len(test.get(u, []))
        assert len(test.get(u, [])) == min(1, n - 1)
        assert len(valid.get(u, [])) == min(1, n - 1 - len(test.get(u, [])))
        if with_time and n > 2:
            assert inter.time[test[u][0]] > inter.time[valid[u][0]] > \
                inter.time[train[u]].max()
    assert out.record['order'] == ('timestamp' if with_time else 'random')
    again = prepare_interactions(inter, Preparation('leave-one-out'), seed=3)
    assert np.array_equal(again.test, out.test)
    if not with_time:
        other = prepare_interactions(inter, Preparation('leave-one-out'),
                                     seed=4)
        assert not np.array_equal(other.test, out.test)


@pytest.mark.parametrize('dedup,kept', [('first', False), ('last', True)])
def test_dedup_decides_which_rating_counts(dedup, kept):
    # (0, 0) rated 1 at time 0, then 5 at time 2; (0, 1) and (1, 0) rated 4.
    inter = Interactions(np.array([0, 0, 0, 1, 1]), np.array([0, 1, 0, 0, 1]),
                         np.zeros(5, dtype=np.int64), np.arange(1, 6),
                         ['d.inter'], rating=np.array([1., 4., 5., 4., 4.]),
                         time=np.array([0., 1., 2., 3., 4.]))
    out = prepare_interactions(inter, Preparation(min_rating=3.0,
                                                  dedup=dedup))
    rows = np.concatenate([out.train, out.test]).tolist()
    assert (2 in rows) == kept and 0 not in rows
    assert out.record['removed'] == {'duplicates': 1,
                                     'under_min_rating': int(not kept)}


def test_what_a_split_needs_is_named():
    inter = timed()
    inter.time = None
    with pytest.raises(DataFormatError, match="d.inter.*'timestamp'"):
        prepare_interactions(inter, Preparation('temporal-user'))
    inter.rating = None
    with pytest.raises(DataFormatError, match="'rating'"):
        prepare_interactions(inter, Preparation(min_rating=2.0))
    with pytest.raises(ValueError, match="split 'own' needs"):
        prepare_interactions(inter, Preparation('own'))
    with pytest.raises(ValueError, match='leaves no interaction'):
        prepare_interactions(inter, Preparation(user_core=1000))
    for bad in [dict(split='random'), dict(test_ratio=1.0),
                dict(user_core=-1), dict(dedup='none')]:
        with pytest.raises(ValueError):
            Preparation(**bad)


@pytest.fixture
def kgat(tmp_path):
    write_kgat(tmp_path / 'kgat', *random_dataset())
    return str(tmp_path / 'kgat')


def test_a_kgat_folder_prepared_with_nothing_is_the_same_graph(kgat):
    before = load_dataset(kgat, log=False)
    after = load_dataset(kgat, log=False,
                         preparation=Preparation(split='own'))
    for store, keys in ((USER_ITEM, ('edge_index', 'val_edge_index',
                                     'test_edge_index')),
                        (KG, ('edge_index', 'edge_type', 'triplets'))):
        for key in keys:
            assert torch.equal(before[store][key], after[store][key])
    assert statistics(before) == statistics(after)
    # The same data, a different history: the fingerprints differ, and
    # the defaults' fingerprint is the one every earlier result has.
    assert fingerprint(before) != fingerprint(after)
    assert 'preparation' not in before
    assert load_dataset(kgat, log=False, preparation=Preparation()) \
        .get('preparation') is None


def test_a_filtered_kgat_folder_keeps_its_ids(kgat):
    data = load_dataset(kgat, log=False,
                        preparation=Preparation(item_core=4, user_core=6))
    train, test, _ = random_dataset()
    pairs = literal_k_core(sorted(set(train + test),
                                  key=(train + test).index), 6, 4)
    users = sorted({u for u, _ in pairs})
    items = sorted({i for _, i in pairs})
    assert data['user'].raw_id == [str(u) for u in users]
    assert data['item'].raw_id == [str(i) for i in items]
    store = data[USER_ITEM]
    got = {(users[u], items[i]) for key in ('edge_index', 'val_edge_index',
                                            'test_edge_index')
           for u, i in store[key].t().tolist()}
    assert got == set(pairs)
    # An item's entity is still the item: its triplets stay its own.
    kg = data[KG].triplets
    _, _, triplets = random_dataset()
    names = data['entity'].raw_id
    got = {(int(names[h]), int(names[t])) for h, _, t in kg.t().tolist()}
    assert got == {(h, t) for h, _, t in triplets}


def test_stats_shows_the_effect_and_train_records_it(kgat, tmp_path,
                                                      capsys):
    flags = ['--split', 'leave-one-out', '--user-core', '3']
    assert main(['stats', kgat, '--json'] + flags) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['as_read'] == statistics(load_dataset(kgat, log=False))
    assert out['prepared']['num_test'] == out['prepared']['num_users']
    assert out['preparation']['split'] == 'leave-one-out'
    assert main(['stats', kgat] + flags) == 0
    text = capsys.readouterr().out
    assert '| as read |' in text.replace('    ', '') and \
        'preparation: split leave-one-out, user core 3' in text
    result = tmp_path / 'r.json'
    assert main(['train', kgat, '--model', 'mf', '--epochs', '1',
                 '--output', str(result), '--threads', '1'] + flags) == 0
    dataset = json.loads(result.read_text())['dataset']
    assert dataset['preparation'] == out['preparation']
    assert dataset['split']['test'] == 'leave-one-out'


def test_a_recbole_folder_with_ratings_and_times_through_the_cli(
        tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = ['user_id:token\titem_id:token\trating:float\ttimestamp:float']
    for _ in range(400):
        rows.append(f'u{rng.integers(30)}\ti{rng.integers(40)}\t'
                    f'{rng.integers(1, 6)}\t{rng.integers(10**6)}')
    folder = tmp_path / 'ml'
    folder.mkdir()
    (folder / 'ml.inter').write_text('\n'.join(rows) + '\n')
    flags = ['--min-rating', '3', '--user-core', '4', '--item-core', '2',
             '--split', 'temporal-user', '--test-ratio', '0.25']
    assert main(['stats', str(folder), '--json'] + flags) == 0
    out = json.loads(capsys.readouterr().out)
    removed = out['preparation']['removed']
    assert removed['under_min_rating'] > 0 and removed['k_core'] > 0
    assert out['prepared']['num_users'] < out['as_read']['num_users']
    result = tmp_path / 'r.json'
    assert main(['train', str(folder), '--model', 'lightgcn', '--epochs',
                 '1', '--threads', '1', '--output', str(result)] +
                flags) == 0
    dataset = json.loads(result.read_text())['dataset']
    assert dataset['split'] == {'test': 'temporal-user', 'test_ratio': 0.25,
                                'seed': 0, 'validation': 'temporal-user',
                                'order': 'timestamp',
                                'train_order': 'timestamp'}
    assert dataset['preparation'] == out['preparation']
