r"""The KG recommenders' training options beyond their tiny configuration:
KGCL's augmentations and main-graph dropout, KGAT without attention and
from a pretrained MF, KGIN's paper forms."""
import math

import pytest
import torch

from diffkg_pyg.data import KG, ablate_kg
from diffkg_pyg.nn.models import KGAT
from diffkg_pyg.train import Trainer, get_recipe, save_model
from tests.train.test_every_model import full_data


def tiny(name):
    return {k: v for k, v in get_recipe(name).tiny.items()
            if k not in ('batch_size', 'max_batches')}


def fit(name, **hparams):
    settings = dict(batch_size=32, max_batches=2)
    recipe = get_recipe(name)(**{**tiny(name), **hparams})
    trainer = Trainer(recipe, full_data(), ks=(20, ), log=lambda line: None,
                      **settings)
    before = {k: v.clone() for k, v in trainer.model.named_parameters()}
    result = trainer.fit(epochs=2, patience=5)
    assert 0.0 <= result.valid['recall@20'] <= 1.0
    assert all(math.isfinite(r['loss']) for r in result.history)
    # The steps moved the embeddings (the best epoch's are restored):
    moved = [k for k, v in trainer.model.named_parameters()
             if not torch.equal(v, before[k])]
    assert any('emb' in k for k in moved), moved
    return trainer, result


@pytest.mark.parametrize('hparams', [
    dict(augmentation='weighted', ui_drop=0.05, graph_dropout=0.2),
    dict(augmentation='weighted-mix', ui_drop=0.4, num_slots=3),
])
def test_kgcl_augmentations_train(hparams):
    trainer, _ = fit('kgcl', **hparams)
    recipe = trainer.recipe
    model = trainer.model.train()
    gen = torch.Generator().manual_seed(0)
    views = [model.kg_view(*recipe.slots, gen) for _ in range(2)]
    dropped = (views[0][0] == model.num_entities).float().mean()
    assert 0.3 < float(dropped) < 1.0  # Half the slots, plus the padding.
    for adj in model.ui_views(recipe.train_edge_index, views, gen):
        kept = adj.to_sparse_coo().coalesce().indices().size(1) / 2
        assert 0 < kept < recipe.train_edge_index.size(1)


def test_kgat_without_attention_keeps_the_laplacian():
    trainer, _ = fit('kgat', attention=False)
    recipe = trainer.recipe
    initial = KGAT.initial_weights(recipe.edge_index, recipe.edge_type,
                                   recipe.pair, recipe.pairs.size(1))
    assert torch.equal(recipe.weight, initial)


def test_kgat_starts_from_a_pretrained_mf(tmp_path):
    trainer, _ = fit('mf', embedding_dim=8)
    path = str(tmp_path / 'mf.pt')
    save_model(path, trainer.recipe, trainer.model, trainer.sizes,
               trainer.context.train_edge_index)
    mf = trainer.model
    recipe = get_recipe('kgat')(**{**tiny('kgat'),
                                   'pretrain': path})
    kgat = Trainer(recipe, full_data(), ks=(20, ), log=lambda line: None,
                   batch_size=32, max_batches=2)
    assert torch.equal(kgat.model.user_emb, mf.user_emb)
    assert torch.equal(kgat.model.entity_emb[:mf.item_emb.size(0)],
                       mf.item_emb)
    bad = get_recipe('kgat')(**{**tiny('kgat'),
                                'embedding_dim': 4, 'hidden_channels': (4, ),
                                'pretrain': path})
    with pytest.raises(ValueError, match='not an mf model of this dataset'):
        Trainer(bad, full_data(), log=lambda line: None)


def test_kgin_paper_forms_train():
    _, paper = fit('kgin', intent_attention='intents', user_residual=False,
                   independence_on='intents', independence='mi')
    _, default = fit('kgin')
    # The forms change the computation from the first step on:
    assert paper.history[0]['loss'] != default.history[0]['loss']


@pytest.mark.parametrize('name', ['kgin', 'kgat', 'kgcl'])
def test_kg_models_train_without_their_kg_and_refuse_no_kg(name):
    # The KG-utility baseline: every triplet removed, the relation types
    # kept; a dataset without relation types at all is refused.
    data = ablate_kg(full_data(), 'remove')
    recipe = get_recipe(name)(**tiny(name))
    trainer = Trainer(recipe, data, ks=(20, ), log=lambda line: None,
                      batch_size=32, max_batches=2)
    result = trainer.fit(epochs=1, patience=1)
    assert math.isfinite(result.valid['recall@20'])
    data[KG].num_relations = 0
    with pytest.raises(ValueError, match=f'{name} needs a knowledge graph'):
        Trainer(get_recipe(name)(**tiny(name)), data, log=lambda line: None)
