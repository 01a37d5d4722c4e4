import pytest
import torch

from diffkg_pyg import DiffKG
from diffkg_pyg.data import USER_ITEM, synthetic_dataset
from diffkg_pyg.training import (
    DiffKGTrainer,
    sample_negative_items,
    train_diffkg,
    train_lightgcn,
)


@pytest.mark.parametrize('seed', [0, 1])
def test_sample_negative_items(seed):
    gen = torch.Generator().manual_seed(seed)
    train = torch.tensor([[0, 0, 0, 1, 2, 2], [0, 1, 2, 3, 0, 4]])
    user = train[0].repeat(50)
    item = sample_negative_items(user, train, 5, gen)
    known = set(map(tuple, train.t().tolist()))
    assert all((u, i) not in known
               for u, i in zip(user.tolist(), item.tolist()))
    assert set(item[user == 0].tolist()) == {3, 4}  # Only ones left.


def test_sample_negative_items_gives_up():
    train = torch.tensor([[0, 0], [0, 1]])
    with pytest.raises(ValueError, match='could not sample'):
        sample_negative_items(torch.tensor([0]), train, 2, max_rounds=3)


def test_train_lightgcn_smoke():
    data = synthetic_dataset(num_users=60, num_items=80, num_clusters=4,
                             attributes_per_cluster=4)
    lines = []
    result = train_lightgcn(data, embedding_dim=8, epochs=3, patience=2,
                            max_batches=2, batch_size=64, ks=(5, 20),
                            log=lines.append)
    assert 1 <= result.best_epoch <= result.epochs_run <= 3
    assert set(result.valid) == {'recall@5', 'recall@20', 'ndcg@5',
                                 'ndcg@20'}
    assert all(0.0 <= v <= 1.0 for v in result.test.values())
    assert len(result.history) == result.epochs_run
    assert len([line for line in lines if line.startswith('epoch')]) == \
        result.epochs_run
    assert result.to_dict()['best_epoch'] == result.best_epoch


def test_train_lightgcn_learns_and_is_deterministic():
    data = synthetic_dataset(num_users=200, num_items=150, num_clusters=5)
    kwargs = dict(embedding_dim=16, epochs=15, patience=15, batch_size=256,
                  lr=1e-2, log=lambda line: None)
    first, second = train_lightgcn(data, **kwargs), train_lightgcn(data,
                                                                   **kwargs)
    assert first.test == second.test
    # 20 random items out of 150 would give a recall@20 near 0.13:
    assert first.test['recall@20'] > 0.25


def test_train_lightgcn_needs_validation():
    data = synthetic_dataset(num_users=30, num_items=40, num_clusters=4,
                             attributes_per_cluster=4, val_ratio=0.0)
    assert data[USER_ITEM].val_edge_index.size(1) == 0
    with pytest.raises(ValueError, match='no validation interactions'):
        train_lightgcn(data, epochs=1)


def small_data(**kwargs):
    return synthetic_dataset(num_users=60, num_items=80, num_clusters=4,
                             attributes_per_cluster=4, **kwargs)


DIFFKG_SMALL = dict(embedding_dim=8, denoiser_hidden=16, use_compile=False,
                    batch_size=32, ks=(5, 20))


def test_train_diffkg_logs_every_term():
    lines = []
    result = train_diffkg(small_data(), epochs=2, patience=2, max_batches=3,
                          log=lines.append, **DIFFKG_SMALL)
    assert 1 <= result.best_epoch <= result.epochs_run == 2
    epoch_lines = [line for line in lines if line.startswith('epoch')]
    assert len(epoch_lines) == 2
    for key in ('loss', 'bpr', 'reg', 'ssl', 'denoiser_loss', 'diff',
                'ckgc', 'kg_edges_kept', 'diffusion_seconds',
                'rebuild_seconds', 'recommendation_seconds',
                'eval_seconds'):
        assert all(f'| {key} ' in line for line in epoch_lines), key
        assert all(key in record for record in result.history), key
    record = result.to_dict()
    assert record['kg_edges_kept'] == result.extra['kg_edges_kept'] > 0
    assert set(record['phase_seconds']) == {'diffusion', 'rebuild',
                                            'recommendation', 'eval'}
    assert all(0.0 <= v <= 1.0 for v in result.test.values())


@pytest.mark.parametrize('cl_pattern', [0, 1])
def test_diffkg_trains_on_the_denoised_kg(cl_pattern):
    data = small_data()
    torch.manual_seed(0)
    model = DiffKG.from_data(data, cl_pattern=cl_pattern, embedding_dim=8,
                             denoiser_hidden=16, use_compile=False)
    trainer = DiffKGTrainer(model, data, batch_size=32, max_batches=2)
    encoded = []
    original = model.kg_encoder.forward

    def spy(entity_emb, relation_emb, kg_edge_index, kg_edge_type):
        encoded.append(kg_edge_index)
        return original(entity_emb, relation_emb, kg_edge_index, kg_edge_type)

    model.kg_encoder.forward = spy
    trainer.train_epoch(1)
    denoised = trainer.denoised_kg[0]
    assert not torch.equal(denoised, trainer.sampled_kg[0])
    # Both views are encoded in every step, the denoised KG among them:
    assert sum(e is denoised for e in encoded) == 2
    assert sum(e is trainer.sampled_kg[0] for e in encoded) == 2
    # Evaluation encodes with the main view: denoised iff cl_pattern 0.
    encoded.clear()
    trainer.score_users()
    assert (encoded[0] is denoised) == (cl_pattern == 0)


def test_train_diffkg_is_deterministic_and_restores_best():
    data = small_data()
    kwargs = dict(epochs=3, patience=3, max_batches=2, seed=3,
                  log=lambda line: None, **DIFFKG_SMALL)
    first, second = train_diffkg(data, **kwargs), train_diffkg(data, **kwargs)
    assert first.test == second.test
    assert [r['loss'] for r in first.history] == \
        [r['loss'] for r in second.history]
    best = first.history[first.best_epoch - 1]
    assert first.extra['kg_edges_kept'] == best['kg_edges_kept']


def test_diffkg_trainer_rejects_other_data():
    data = small_data()
    model = DiffKG.from_data(synthetic_dataset(num_users=10, num_items=80,
                                               num_clusters=4),
                             use_compile=False)
    with pytest.raises(ValueError, match='does not fit the data'):
        DiffKGTrainer(model, data)


def test_diffkg_without_diffusion_uses_the_original_kg():
    data = small_data()
    torch.manual_seed(0)
    model = DiffKG.from_data(data, embedding_dim=8, denoiser_hidden=16,
                             use_compile=False)
    before = [p.detach().clone() for p in model.denoiser.parameters()]
    trainer = DiffKGTrainer(model, data, batch_size=32, max_batches=2,
                            diffusion=False)
    record = trainer.train_epoch(1)
    assert trainer.denoised_kg is trainer.sampled_kg
    assert 'diff' not in record and record['rebuild_seconds'] < 0.1
    assert all(torch.equal(p, q)
               for p, q in zip(model.denoiser.parameters(), before))
