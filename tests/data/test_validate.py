r"""Every bad dataset graph is one clear ValueError, never a crash: the
cases of the issue one by one, then a property test that mutates a valid
graph at random and trains every registered model on it, in a subprocess
(an abort there fails the test instead of the suite)."""
import os
import os.path as osp
import subprocess
import sys
import warnings

import pytest
import torch

from diffkg_pyg.data import (
    ITEM_USER,
    KG,
    USER_ITEM,
    RunGraph,
    synthetic_dataset,
)
from diffkg_pyg.data import validate as validate_data
from diffkg_pyg.nn.models import DiffKG
from diffkg_pyg.train import MODELS, Trainer, get_recipe

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def small():
    data = synthetic_dataset(num_users=30, num_items=40, num_clusters=2,
                             attributes_per_cluster=3)
    store = data[USER_ITEM]
    store.edge_time = torch.arange(store.edge_index.size(1))
    return data


def _set(store, attr, value):
    setattr(store, attr, value)


def _first_column(store, attr):
    return store[attr][:, :1]


# name -> (mutation, expected words of the message)
MUTATIONS = {
    'item id beyond num_items': (
        lambda d, k: d[USER_ITEM].edge_index[1].__setitem__(
            k, d['item'].num_nodes + 10),
        "edge_index[1, {k}] = {v} is not an item id"),
    'user id beyond num_users': (
        lambda d, k: d[USER_ITEM].edge_index[0].__setitem__(
            k, d['user'].num_nodes + 3),
        "edge_index[0, {k}] = {v} is not a user id"),
    'negative item id in test': (
        lambda d, k: d[USER_ITEM].test_edge_index[1].__setitem__(
            k % d[USER_ITEM].test_edge_index.size(1), -1),
        'test_edge_index[1, {kt}] = -1 is not an item id'),
    'int32 interactions': (
        lambda d, k: _set(d[USER_ITEM], 'edge_index',
                          d[USER_ITEM].edge_index.int()),
        'must hold torch.int64 ids (got torch.int32)'),
    'float interactions': (
        lambda d, k: _set(d[USER_ITEM], 'val_edge_index',
                          d[USER_ITEM].val_edge_index.float()),
        'val_edge_index must hold torch.int64 ids (got torch.float32)'),
    'three-row interactions': (
        lambda d, k: _set(d[USER_ITEM], 'edge_index', torch.cat(
            [d[USER_ITEM].edge_index, d[USER_ITEM].edge_index[:1]])),
        'must have shape [2, num_edges]'),
    'validation pair also trained on': (
        lambda d, k: _set(d[USER_ITEM], 'val_edge_index', torch.cat(
            [d[USER_ITEM].val_edge_index,
             d[USER_ITEM].edge_index[:, k:k + 1]], dim=1)),
        'is also in edge_index: the splits must be disjoint'),
    'test pair also validated on': (
        lambda d, k: _set(d[USER_ITEM], 'test_edge_index', torch.cat(
            [d[USER_ITEM].test_edge_index,
             _first_column(d[USER_ITEM], 'val_edge_index')], dim=1)),
        'is also in val_edge_index'),
    'no validation pairs': (
        lambda d, k: delattr(d[USER_ITEM], 'val_edge_index'),
        'has no val_edge_index'),
    'fewer entities than items': (
        lambda d, k: _set(d['entity'], 'num_nodes',
                          d['item'].num_nodes - 1),
        'is below num_items'),
    'num_relations below a relation id': (
        lambda d, k: _set(d[KG], 'num_relations',
                          int(d[KG].edge_type.max())),
        'is not a relation id'),
    'entity id beyond num_entities': (
        lambda d, k: d[KG].edge_index[1].__setitem__(
            k % d[KG].edge_index.size(1), d['entity'].num_nodes),
        'is not an entity id'),
    'triplet relation among the inverses': (
        lambda d, k: d[KG].triplets[1].__setitem__(
            k % d[KG].triplets.size(1), int(d[KG].num_relations) // 2),
        'is not a relation id'),
    'triplet of a pair without an edge': (
        lambda d, k: d[KG].triplets[2].__setitem__(
            k % d[KG].triplets.size(1),
            d[KG].triplets[0, k % d[KG].triplets.size(1)]),
        'the triplets and the edges are of two graphs'),
    'two-row triplets': (
        lambda d, k: _set(d[KG], 'triplets', d[KG].triplets[:2]),
        'must have shape [3, num_edges]'),
    'unsorted knowledge graph': (
        lambda d, k: _set(d[KG], 'edge_index',
                          d[KG].edge_index.flip(1)),
        'must be sorted by head, then tail'),
    'knowledge graph without inverses': (
        lambda d, k: [_set(d[KG], 'edge_index', d[KG].edge_index[:, 1:]),
                      _set(d[KG], 'edge_type', d[KG].edge_type[1:])],
        'has no reverse pair'),
    'one relation missing': (
        lambda d, k: _set(d[KG], 'edge_type', d[KG].edge_type[1:]),
        'entries for'),
    'inconsistent reverse interactions': (
        lambda d, k: _set(d[ITEM_USER], 'edge_index',
                          d[ITEM_USER].edge_index[:, 1:]),
        'is not the train pairs reversed'),
    'edge_time of another length': (
        lambda d, k: _set(d[USER_ITEM], 'edge_time',
                          d[USER_ITEM].edge_time[1:]),
        'edge_time'),
}


def mutated(name, k=3):
    data = small()
    mutation, message = MUTATIONS[name]
    store = data[USER_ITEM]
    kt = k % store.test_edge_index.size(1)
    k = k % store.edge_index.size(1)
    value = (data['item'].num_nodes + 10 if 'item id' in name
             else data['user'].num_nodes + 3)
    mutation(data, k)
    return data, message.format(k=k, kt=kt, v=value)


def test_a_valid_graph_passes():
    data = small()
    assert validate_data(data) is data


@pytest.mark.parametrize('name', sorted(MUTATIONS))
def test_every_mutation_is_one_clear_error(name):
    data, message = mutated(name)
    with pytest.raises(ValueError) as info:
        validate_data(data)
    assert message in str(info.value)
    assert '; fix: ' in str(info.value)


@pytest.mark.parametrize('name', ['item id beyond num_items',
                                  'int32 interactions',
                                  'num_relations below a relation id',
                                  'no validation pairs',
                                  'validation pair also trained on'])
def test_the_trainer_refuses_before_any_kernel(name):
    # The cases that crashed or misled: out-of-range ids aborted the
    # process, int32 failed inside scatter, num_relations at epoch 1.
    for model in ('lightgcn', 'diffkg'):
        data, message = mutated(name)
        tiny = get_recipe(model).tiny
        recipe = get_recipe(model)(**{k: v for k, v in tiny.items()
                                      if k not in ('batch_size',
                                                   'max_batches')})
        with pytest.raises(ValueError, match='data'):
            Trainer(recipe, data)


def test_the_adjacency_refuses_out_of_range_ids():
    data = small()
    sizes = data['user'].num_nodes, data['item'].num_nodes
    bad = data[USER_ITEM].edge_index.clone()
    bad[1, 0] = 250
    with pytest.raises(ValueError, match=r'row 1 holds item ids in'):
        RunGraph(bad, *sizes).adjacency(True)
    with pytest.raises(ValueError, match='int64'):
        RunGraph(bad.int(), *sizes).adjacency(True)


def test_from_data_refuses_a_graph_without_kg():
    data = small()
    del data[KG]
    with pytest.raises(ValueError, match='no knowledge graph'):
        DiffKG.from_data(data)


def test_diffkg_refuses_a_kg_without_edges():
    # It trained into a NaN diffusion loss before (no head to diffuse).
    data = small()
    data[KG].edge_index = torch.empty(2, 0, dtype=torch.long)
    data[KG].edge_type = torch.empty(0, dtype=torch.long)
    recipe = get_recipe('diffkg')(use_compile=False)
    with pytest.raises(ValueError, match='diffkg needs a knowledge graph'):
        Trainer(recipe, data)


def test_cold_evaluated_users_are_a_warning():
    data = small()
    store = data[USER_ITEM]
    user = int(store.test_edge_index[0, 0])
    keep = store.edge_index[0] != user
    store.edge_index = store.edge_index[:, keep]
    store.edge_time = store.edge_time[keep]
    del data[ITEM_USER]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        validate_data(data)
    assert any('have no train pair' in str(w.message) for w in caught)


# The property test ######################################################

FUZZ = r'''
import sys
from hypothesis import HealthCheck, given, settings, strategies as st
from tests.data.test_validate import MUTATIONS, mutated
from diffkg_pyg.train import Trainer, get_recipe


def fuzz(model):
    tiny = get_recipe(model).tiny
    recipe = get_recipe(model)(**{k: v for k, v in tiny.items()
                                  if k not in ('batch_size', 'max_batches')})

    @settings(max_examples=int(sys.argv[1]), deadline=None,
              derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(sorted(MUTATIONS)), st.integers(0, 200))
    def check(name, k):
        data, message = mutated(name, k)
        try:
            Trainer(recipe, data, max_batches=1)
        except ValueError as error:
            assert message in str(error), (model, name, k, str(error))
        else:
            raise AssertionError(f'{model}: {name} (k={k}) was accepted')

    check()
    print('fuzzed', model, flush=True)


for model in sys.argv[2:]:
    fuzz(model)
'''


def test_fuzzed_graphs_fail_clearly_for_every_model():
    # One process for every model (its start costs more than a model's
    # examples); a crash of the interpreter fails it too.
    out = subprocess.run([sys.executable, '-c', FUZZ, '40', *sorted(MODELS)],
                         cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, 'OMP_NUM_THREADS': '1'},
                         timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert out.stdout.split() == [w for m in sorted(MODELS)
                                  for w in ('fuzzed', m)]
