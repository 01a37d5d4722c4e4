import json

import pytest
import torch

from diffkg_pyg.cli import main
from diffkg_pyg.data import (
    KG,
    USER_ITEM,
    ablate_kg,
    kg_triplets,
    parse_kg_ablation,
    synthetic_dataset,
    validate,
)


def small():
    return synthetic_dataset(num_users=40, num_items=50, num_clusters=3,
                             attributes_per_cluster=4)


def triplets(data):
    return set(map(tuple, kg_triplets(data).t().tolist()))


@pytest.mark.parametrize('text,parsed', [
    ('remove', ('remove', 1.0)), ('drop:0.5', ('drop', 0.5)),
    ('shuffle:0', ('shuffle', 0.0)), ('shuffle:1', ('shuffle', 1.0))])
def test_parse(text, parsed):
    assert parse_kg_ablation(text) == parsed


@pytest.mark.parametrize('text', ['remove:0.5', 'drop', 'drop:1.5',
                                  'shuffle:x', 'mix:0.5'])
def test_parse_errors(text):
    with pytest.raises(ValueError, match='ablation'):
        parse_kg_ablation(text)


def test_remove_keeps_the_interactions_and_ids():
    data = small()
    out = ablate_kg(data, 'remove')
    assert out[KG].edge_index.size(1) == 0 and out.kg_ablation == 'remove'
    assert data[KG].edge_index.size(1) > 0  # The original is untouched.
    for attr in ('edge_index', 'val_edge_index', 'test_edge_index'):
        assert torch.equal(out[USER_ITEM][attr], data[USER_ITEM][attr])
    assert out['entity'].num_nodes == data['entity'].num_nodes
    validate(out)


@pytest.mark.parametrize('fraction', [0.0, 0.5, 1.0])
def test_drop_removes_the_fraction(fraction):
    data = small()
    before = triplets(data)
    out = ablate_kg(data, f'drop:{fraction}', seed=3)
    after = triplets(out)
    assert after <= before
    assert len(before) - len(after) == int(fraction * len(before) + 0.5)
    if out[KG].edge_index.size(1):
        validate(out)  # Sorted, every reverse pair present.
    assert ablate_kg(data, f'drop:{fraction}', seed=3)[KG].edge_index.equal(
        out[KG].edge_index)  # Seeded.


def test_ablation_keeps_every_relation_of_a_pair():
    data = small()
    store = data[KG]
    # A second relation on an existing pair, as real KGs have:
    head, relation, tail = store.triplets[:, 0].tolist()
    extra = torch.tensor([[head], [relation + 1], [tail]])
    store.triplets = torch.cat([store.triplets, extra], dim=1)
    out = ablate_kg(data, 'drop:0')
    assert triplets(out) == triplets(data)
    assert out[KG].num_triplets == store.triplets.size(1)


def test_shuffle_moves_the_tails_of_the_fraction():
    data = small()
    before = triplets(data)
    out = ablate_kg(data, 'shuffle:0.5', seed=1)
    validate(out)
    after = triplets(out)
    kept = len(before & after)
    # Half the triplets keep their tail (a shuffled one may land back).
    assert abs(kept - len(before) / 2) <= 0.1 * len(before)
    assert out['entity'].num_nodes == data['entity'].num_nodes


def test_the_cli_trains_on_an_ablated_kg_and_records_it(tmp_path, capsys):
    output = tmp_path / 'r.json'
    assert main(['train', 'synthetic', '--model', 'lightgcn', '--epochs',
                 '1', '--max-batches', '1', '--kg-ablation', 'drop:0.5',
                 '--output', str(output)]) == 0
    dataset = json.loads(output.read_text())['dataset']
    assert dataset['kg_ablation'] == 'drop:0.5'
    assert dataset['kg_ablation_seed'] == 0
    # DiffKG cannot run without KG edges, and says so in one line:
    assert main(['train', 'synthetic', '--epochs', '1', '--kg-ablation',
                 'remove']) == 2
    err = capsys.readouterr().err
    assert 'diffkg needs a knowledge graph' in err and err.count('\n') == 1
