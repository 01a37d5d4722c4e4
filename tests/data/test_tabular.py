r"""RecBole atomic files and CSV/TSV tables with string ids: the same graph
(and the same training numbers for every model) as the equivalent KGAT
layout, the tokens kept, the splits recorded, bad rows named by file and
line."""
import json

import numpy as np
import pytest

from diffkg_pyg.cli import main
from diffkg_pyg.data import (
    KG,
    USER_ITEM,
    DataFormatError,
    MissingFileError,
    detect_tabular,
    load_dataset,
    read_tabular_folder,
)
from diffkg_pyg.data.tabular import token_order
from diffkg_pyg.train import MODELS, get_recipe
from diffkg_pyg.train.checkpoint import fingerprint

NUM_USERS, NUM_ITEMS, NUM_ENTITIES, NUM_RELATIONS = 20, 30, 45, 4


def random_dataset(seed=0):
    r"""Integer train and test pairs and triplets: every user and item in
    train, every entity beyond the items in a triplet."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for user in range(NUM_USERS):
        items = rng.permutation(NUM_ITEMS)[:8]
        train += [(user, int(i)) for i in items[:6]]
        test += [(user, int(i)) for i in items[6:]]
    tested = set(test)
    for i in set(range(NUM_ITEMS)) - {i for _, i in train}:
        train.append(next((u, i) for u in range(NUM_USERS)
                          if (u, i) not in tested))
    heads = rng.integers(0, NUM_ENTITIES, 120)
    tails = np.concatenate([np.arange(NUM_ITEMS, NUM_ENTITIES),
                            rng.integers(0, NUM_ENTITIES, 105)])
    triplets = np.stack([heads, rng.integers(0, NUM_RELATIONS, 120), tails],
                        axis=1).tolist()
    return train, test, triplets


def user(u):
    return f'user-{u:02d}'


def item(i, csv=False):
    return f'item, {i:02d}' if csv else f'item:{i:02d}'


def entity(e):
    return f'/m/{e:02d}' if e < NUM_ITEMS else f'/x/{e:02d}'


def relation(r):
    return f'rel.{r}'


def write_kgat(folder, train, test, triplets):
    folder.mkdir()
    for name, pairs in (('train', train), ('test', test)):
        by_user = {}
        for u, i in pairs:
            by_user.setdefault(u, []).append(i)
        (folder / f'{name}.txt').write_text(''.join(
            f'{u} ' + ' '.join(map(str, items)) + '\n'
            for u, items in sorted(by_user.items())))
    (folder / 'kg_final.txt').write_text(
        ''.join(f'{h} {r} {t}\n' for h, r, t in triplets))


def _times(pairs, timed):
    # A shuffled time per pair (its index is the file order), or none.
    if not timed:
        return [None] * len(pairs)
    return np.random.default_rng(len(pairs)).permutation(len(pairs))


def write_recbole(folder, train, test, triplets, timed=False, name='mine'):
    folder.mkdir()
    for part, pairs in (('train', train), ('test', test)):
        # Extra columns are ignored; the rating is read (and checked).
        header = 'user_id:token\titem_id:token\trating:float\tnote:token_seq'
        (folder / f'{name}.{part}.inter').write_text(
            header + ('\ttimestamp:float\n' if timed else '\n') + ''.join(
                f'{user(u)}\t{item(i)}\t4.0\ta b' +
                (f'\t{t}.0\n' if timed else '\n')
                for (u, i), t in zip(pairs, _times(pairs, timed))))
    (folder / f'{name}.kg').write_text(
        'head_id:token\trelation_id:token\ttail_id:token\n' + ''.join(
            f'{entity(h)}\t{relation(r)}\t{entity(t)}\n'
            for h, r, t in triplets))
    (folder / f'{name}.link').write_text(
        'item_id:token\tentity_id:token\n' +
        ''.join(f'{item(i)}\t{entity(i)}\n' for i in range(NUM_ITEMS)))


def write_csv(folder, train, test, triplets, timed=False):
    folder.mkdir()
    for part, pairs in (('train', train), ('test', test)):
        (folder / f'{part}.csv').write_text(
            'user,item' + (',timestamp\n' if timed else '\n') + ''.join(
                f'{user(u)},"{item(i, True)}"' +
                (f',{t}\n' if timed else '\n')
                for (u, i), t in zip(pairs, _times(pairs, timed))))
    (folder / 'kg.csv').write_text('head,relation,tail\n' + ''.join(
        f'{entity(h)},{relation(r)},{entity(t)}\n' for h, r, t in triplets))
    (folder / 'link.csv').write_text('item,entity\n' + ''.join(
        f'"{item(i, True)}",{entity(i)}\n' for i in range(NUM_ITEMS)))


def write_folders(root, timed=False):
    parts = random_dataset()
    out = {}
    writers = [('recbole', write_recbole), ('csv', write_csv)]
    if not timed:  # (The KGAT layout has no time.)
        writers.insert(0, ('kgat', write_kgat))
    for layout, writer in writers:
        out[layout] = root / f'{layout}{"-timed" if timed else ""}'
        writer(out[layout], *parts, **({'timed': True} if timed else {}))
    return out


@pytest.fixture
def folders(tmp_path):
    return write_folders(tmp_path)


def test_the_same_graph_as_the_kgat_layout(folders):
    graphs = {layout: load_dataset(str(folder), log=False)
              for layout, folder in folders.items()}
    assert {g.layout for g in graphs.values()} == set(folders)
    prints = {layout: fingerprint(g) for layout, g in graphs.items()}
    assert len(set(prints.values())) == 1, prints
    for layout in ('recbole', 'csv'):
        data = graphs[layout]
        csv = layout == 'csv'
        assert data['user'].raw_id == [user(u) for u in range(NUM_USERS)]
        assert data['item'].raw_id == [item(i, csv)
                                       for i in range(NUM_ITEMS)]
        assert data['entity'].raw_id == [entity(e)
                                         for e in range(NUM_ENTITIES)]
        assert data[KG].relation_raw_id == [relation(r)
                                            for r in range(NUM_RELATIONS)]
        assert data.split == {'test': 'given', 'validation': 'ratio'}


def _config(name, path):
    lines = []
    for key, value in get_recipe(name).tiny.items():
        value = list(value) if isinstance(value, tuple) else value
        lines.append(f'{key} = {json.dumps(value)}')
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


CHRONOLOGICAL = ('tdiffrec', 'ltdiffrec')  # They need timestamps.


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(MODELS))
def test_every_model_trains_to_the_same_numbers(name, tmp_path, capsys):
    # Each model on the KGAT layout and its RecBole and CSV equivalents;
    # those needing time on RecBole and CSV files with timestamps.
    folders = write_folders(tmp_path, timed=name in CHRONOLOGICAL)
    config = _config(name, tmp_path / 'tiny.toml')
    records, lists = {}, {}
    for layout, folder in folders.items():
        out, saved = tmp_path / f'{layout}.json', tmp_path / f'{layout}.pt'
        assert main(['train', str(folder), '--model', name, '--epochs', '1',
                     '--config', config, '--output', str(out),
                     '--save-model', str(saved)]) == 0
        records[layout] = json.loads(out.read_text())
        # The saved model, asked again: the run's test metrics exactly.
        again = tmp_path / f'{layout}-evaluate.json'
        assert main(['evaluate', str(saved), str(folder),
                     '--output', str(again)]) == 0
        evaluated = json.loads(again.read_text())
        assert evaluated['test'] == records[layout]['test'], layout
        assert evaluated['same_dataset'] is True
        topk = tmp_path / f'{layout}-topk.tsv'
        assert main(['recommend', str(saved), '--k', '5',
                     '--output', str(topk)]) == 0
        lists[layout] = [row.split('\t') for row in
                         topk.read_text().splitlines()]
    capsys.readouterr()
    first = records[next(iter(folders))]
    for layout, record in records.items():
        assert record['test'] == first['test'], layout
        assert record['valid'] == first['valid'], layout
        assert record['dataset']['layout'] == layout
    # recommend writes each layout's own ids, the same lists in each.
    decoded = {}
    for layout, rows in lists.items():
        assert rows[0] == ['user', 'rank', 'item', 'score']
        csv = layout == 'csv'
        decoded[layout] = []
        for u, rank, i, score in rows[1:]:
            number = (int(u), int(i)) if layout == 'kgat' else \
                (int(u[-2:]), int(i[-2:]))
            if layout != 'kgat':  # The tokens, as the files spell them.
                assert (u, i) == (user(number[0]), item(number[1], csv))
            decoded[layout].append((*number, int(rank), float(score)))
    first = decoded[next(iter(folders))]
    for layout, rows in decoded.items():
        assert [r[:3] for r in rows] == [r[:3] for r in first], layout
        assert [r[3] for r in rows] == pytest.approx(
            [r[3] for r in first], rel=1e-5, abs=1e-6)


def test_timestamps_order_every_users_train_pairs(tmp_path):
    folders = write_folders(tmp_path, timed=True)
    graphs = [read_tabular_folder(str(f)) for f in folders.values()]
    assert fingerprint(graphs[0]) == fingerprint(graphs[1])
    data = graphs[0]
    assert data.split['train_order'] == 'timestamp'
    # The times written: the train file's shuffled permutation.
    train, _, _ = random_dataset()
    time = dict(zip(train, _times(train, True)))
    store = data[USER_ITEM]
    pairs = list(map(tuple, store.edge_index.t().tolist()))
    times = [time[p] for p in pairs]
    for k in range(1, len(pairs)):  # Per user, in time order.
        if pairs[k][0] == pairs[k - 1][0]:
            assert times[k] > times[k - 1]
    rank = store.edge_time.tolist()  # The rank of each pair's time.
    assert sorted(rank) == list(range(len(pairs)))
    assert [times[k] for k in np.argsort(rank)] == sorted(times)


def test_token_order():
    vocab, ids = token_order(np.array(['10', '9', '007', '7', '9']))
    assert vocab.tolist() == ['007', '7', '9', '10'] and \
        ids.tolist() == [3, 2, 0, 1, 2]
    vocab, ids = token_order(np.array(['b', '10', 'a', '9']))
    assert vocab.tolist() == ['10', '9', 'a', 'b'] and \
        ids.tolist() == [3, 0, 2, 1]


def _inter(folder, text, name='d.inter'):
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)
    return folder


def test_a_single_file_is_split_by_a_seeded_ratio(tmp_path):
    rng = np.random.default_rng(1)
    rows = ''.join(f'u{u}\ti{i}\n' for u in range(30)
                   for i in rng.permutation(50)[:10])
    folder = _inter(tmp_path / 'd', 'user_id:token\titem_id:token\n' + rows)
    assert detect_tabular(str(folder)) == 'recbole'
    a = read_tabular_folder(str(folder), test_ratio=0.3, split_seed=5)
    b = read_tabular_folder(str(folder), test_ratio=0.3, split_seed=5)
    c = read_tabular_folder(str(folder), test_ratio=0.3, split_seed=6)
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)
    assert a.split == {'test': 'ratio', 'test_ratio': 0.3, 'seed': 5,
                       'validation': 'ratio'}
    store = a[USER_ITEM]
    # 3 of every user's 10 to test, 1 of the other 7 to validation:
    assert store.test_edge_index.size(1) == 90
    assert store.val_edge_index.size(1) == 30
    assert store.edge_index.size(1) == 180
    pairs = [set(map(tuple, e.t().tolist())) for e in
             (store.edge_index, store.val_edge_index, store.test_edge_index)]
    assert not (pairs[0] & pairs[2]) and not (pairs[1] & pairs[2])
    assert a[KG].edge_index.size(1) == 0  # No .kg: no knowledge graph.
    assert a['entity'].num_nodes == a['item'].num_nodes


def test_a_given_validation_file_is_the_validation_split(tmp_path):
    folder = _inter(tmp_path / 'v', 'user\titem\na\tx\na\ty\nb\ty\nb\tz\n',
                    'train.tsv')
    (folder / 'valid.tsv').write_text('user\titem\na\tz\n')
    (folder / 'test.tsv').write_text('user\titem\nb\tx\n')
    data = load_dataset(str(folder), log=False)
    assert data.layout == 'csv'
    assert data[USER_ITEM].val_edge_index.tolist() == [[0], [2]]
    assert data[USER_ITEM].edge_index.size(1) == 4
    assert data.split == {'test': 'given', 'validation': 'given'}


@pytest.mark.filterwarnings('ignore:.*never occur in')
def test_without_a_link_an_entity_named_as_an_item_is_it(tmp_path):
    folder = _inter(tmp_path / 'k', 'user,item\nu,b\nu,a\nw,a\n',
                    'interactions.csv')
    (folder / 'kg.csv').write_text('head,relation,tail\nb,r,zz\nyy,r,a\n')
    data = read_tabular_folder(str(folder), test_ratio=0.5)
    assert data['entity'].raw_id == ['a', 'b', 'yy', 'zz']
    assert data[KG].triplets.tolist() == [[1, 2], [0, 0], [3, 0]]


@pytest.mark.parametrize('files,where,message', [
    ({'d.inter': 'user_id:token\tname:token\nu\ti\n'}, 'd.inter, line 1',
     "the header lacks the column 'item_id'"),
    ({'d.inter': 'user_id:token\titem_id:token\nu\ti\nu\ti\tj\n'},
     'd.inter, line 3', '3 fields; the header has 2'),
    ({'d.inter': 'user_id:token\titem_id:token\nu\t \n'}, 'd.inter, line 2',
     "empty 'item' field"),
    ({'d.inter': 'user_id:token\titem_id:token\trating:float\n'
      'u\ti\t4\n\nu\tj\tfive\n'}, 'd.inter, line 4',
     "rating 'five' is not a finite number"),
    ({'d.inter': 'user_id:token\titem_id:token\n'}, 'd.inter, line 1',
     'no rows under the header'),
    ({'d.inter': 'user_id:token\titem_id:token\nu\ti\n',
      'd.kg': 'head_id:token\trelation_id:token\ttail_id:token\ne\tr\tf\n',
      'd.link': 'item_id:token\tentity_id:token\ni\te\ni\tf\n'},
     'd.link, line 3', "item 'i' is linked to a second entity ('f'"),
    ({'d.inter': 'user_id:token\titem_id:token\nu\ti\nu\tj\n',
      'd.kg': 'head_id:token\trelation_id:token\ttail_id:token\ne\tr\tf\n',
      'd.link': 'item_id:token\tentity_id:token\ni\te\nj\te\n'},
     'd.link, line 3', "entity 'e' is linked to a second item ('j')"),
    ({'interactions.csv': 'user,item\nu,"i\n'}, 'interactions.csv, line 2',
     'not readable as CSV'),
])
def test_bad_rows_are_named_by_file_and_line(tmp_path, files, where,
                                             message):
    folder = tmp_path / 'd'
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    with pytest.raises(DataFormatError) as info:
        load_dataset(str(folder), log=False)
    assert str(info.value).startswith(str(folder / where)), info.value
    assert message in str(info.value)


def test_bad_bytes_and_a_named_layout_without_its_files(tmp_path):
    folder = tmp_path / 'b'
    folder.mkdir()
    (folder / 'interactions.csv').write_bytes(b'user,item\nu,\xff\n')
    with pytest.raises(DataFormatError, match=r'line 2: not UTF-8 text'):
        load_dataset(str(folder), log=False)
    with pytest.raises(MissingFileError, match=r'needs NAME.inter'):
        load_dataset(str(folder), log=False, layout='recbole')


def test_the_cli_reads_and_records_a_recbole_folder(folders, tmp_path,
                                                    capsys):
    out = tmp_path / 'out.json'
    assert main(['train', str(folders['recbole']), '--model', 'mf',
                 '--epochs', '1', '--embedding-dim', '4',
                 '--output', str(out)]) == 0
    record = json.loads(out.read_text())
    assert record['dataset']['layout'] == 'recbole'
    assert record['dataset']['split'] == {'test': 'given',
                                          'validation': 'ratio'}
    # A bad row: one line on stderr naming the file and line, exit 2.
    bad = folders['recbole'] / 'mine.test.inter'
    bad.write_text(bad.read_text() + 'lonely\n')
    capsys.readouterr()
    assert main(['train', str(folders['recbole']), '--model', 'mf']) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and f'{bad}, line ' in err, err
