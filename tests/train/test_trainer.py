import pytest
import torch

from diffkg_pyg.data import USER_ITEM, synthetic_dataset
from diffkg_pyg.train import (
    NonFiniteLossError,
    Trainer,
    get_recipe,
    interaction_keys,
    sample_negative_items,
)

SMALL = {'diffkg': dict(embedding_dim=8, denoiser_hidden_channels=16,
                        use_compile=False),
         'lightgcn': dict(embedding_dim=8)}


def small_data(**kwargs):
    return synthetic_dataset(num_users=60, num_items=80, num_clusters=4,
                             attributes_per_cluster=4, **kwargs)


def make_trainer(name, data=None, model=None, **kwargs):
    recipe = get_recipe(name)(**{**SMALL[name], **(model or {})})
    kwargs = {'batch_size': 32, 'max_batches': 2, 'ks': (5, 20),
              'log': lambda line: None, **kwargs}
    return Trainer(recipe, data if data is not None else small_data(),
                   **kwargs)


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


def test_sample_negative_items_with_prebuilt_keys():
    train = torch.tensor([[2, 0, 1, 0, 2, 0], [4, 1, 3, 0, 0, 2]])
    user = train[0].repeat(20)
    keys = interaction_keys(train, 5)
    assert keys.tolist() == sorted(keys.tolist())
    draws = [sample_negative_items(user, train, 5,
                                   torch.Generator().manual_seed(3), keys=k)
             for k in (None, keys)]
    assert torch.equal(draws[0], draws[1])


def test_sample_negative_items_gives_up():
    train = torch.tensor([[0, 0], [0, 1]])
    with pytest.raises(ValueError, match='could not sample'):
        sample_negative_items(torch.tensor([0]), train, 2, max_rounds=3)


@pytest.mark.parametrize('name', ['diffkg', 'lightgcn'])
def test_fit_logs_and_results(name):
    lines = []
    trainer = make_trainer(name, log=lines.append)
    result = trainer.fit(3, patience=2)
    assert 1 <= result.best_epoch <= result.epochs_run <= 3
    assert set(result.valid) == {'recall@5', 'recall@20', 'ndcg@5',
                                 'ndcg@20'}
    assert all(0.0 <= v <= 1.0 for v in result.test.values())
    assert len(result.history) == result.epochs_run
    epoch_lines = [line for line in lines if line.startswith('epoch')]
    assert len(epoch_lines) == result.epochs_run
    assert all('| loss ' in line and 'valid recall@20' in line
               for line in epoch_lines)
    record = result.to_dict()
    assert record['best_epoch'] == result.best_epoch
    assert {'train', 'eval'} <= set(record['phase_seconds'])


@pytest.mark.parametrize('eval_every', [1, 2])
def test_fit_without_test_reports_every_validation(eval_every):
    trainer = make_trainer('lightgcn', eval_every=eval_every)
    seen, calls = [], []
    evaluate = trainer.evaluate
    trainer.evaluate = lambda evaluator: calls.append(evaluator) or \
        evaluate(evaluator)
    result = trainer.fit(4, patience=4, test=False,
                         on_validation=lambda epoch, valid: seen.append(
                             (epoch, valid['recall@20'])))
    assert result.test == {} and trainer.test_evaluator not in calls
    assert [epoch for epoch, _ in seen] == list(range(eval_every, 5,
                                                      eval_every))
    assert dict(seen)[result.best_epoch] == result.valid['recall@20']


def test_on_validation_may_stop_the_fit():
    class Stop(Exception):
        pass

    def stop(epoch, valid):
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        make_trainer('lightgcn').fit(5, patience=5, on_validation=stop)


def test_diffkg_logs_every_term():
    result = make_trainer('diffkg').fit(2, patience=2)
    for key in ('loss', 'bpr', 'reg', 'ssl', 'denoiser_loss', 'diff',
                'ckgc', 'kg_edges_kept', 'diffusion_seconds',
                'rebuild_seconds', 'recommendation_seconds',
                'eval_seconds'):
        assert all(key in record for record in result.history), key
    record = result.to_dict()
    assert record['kg_edges_kept'] == result.extra['kg_edges_kept'] > 0
    assert set(record['phase_seconds']) == {'diffusion', 'rebuild',
                                            'recommendation', 'train',
                                            'eval'}


def test_lightgcn_learns_and_is_deterministic():
    data = synthetic_dataset(num_users=200, num_items=150, num_clusters=5)
    results = [make_trainer('lightgcn', data, model=dict(embedding_dim=16),
                            batch_size=256, lr=1e-2,
                            max_batches=None).fit(15, patience=15)
               for _ in range(2)]
    assert results[0].test == results[1].test
    # 20 random items out of 150 would give a recall@20 near 0.13:
    assert results[0].test['recall@20'] > 0.25


def test_needs_validation():
    data = small_data(val_ratio=0.0)
    assert data[USER_ITEM].val_edge_index.size(1) == 0
    with pytest.raises(ValueError, match='no validation interactions'):
        make_trainer('lightgcn', data)


@pytest.mark.parametrize('kwargs,match', [
    (dict(lr=0.0), 'lr must be > 0'),
    (dict(batch_size=0), 'batch_size must be >= 1'),
    (dict(max_batches=0), 'max_batches must be >= 1'),
    (dict(checkpoint_every=0), "'checkpoint_every' must be >= 1"),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_trainer('lightgcn', **kwargs)


@pytest.mark.parametrize('main_view', ['denoised', 'original'])
def test_diffkg_trains_on_the_denoised_kg(main_view):
    trainer = make_trainer('diffkg', model=dict(main_view=main_view))
    model = trainer.model
    encoded = []
    original = model.kg_encoder.forward

    def spy(entity_emb, relation_emb, kg_edge_index, kg_edge_type):
        encoded.append(kg_edge_index)
        return original(entity_emb, relation_emb, kg_edge_index, kg_edge_type)

    model.kg_encoder.forward = spy
    trainer.train_epoch(1)
    loop = trainer.recipe.loop
    denoised = loop.denoised_kg[0]
    assert not torch.equal(denoised, loop.sampled_kg[0])
    # Both views are encoded in every step, the denoised KG among them:
    assert sum(e is denoised for e in encoded) == 2
    assert sum(e is loop.sampled_kg[0] for e in encoded) == 2
    # Evaluation encodes with the main view:
    encoded.clear()
    trainer.evaluate(trainer.valid_evaluator)
    assert (encoded[0] is denoised) == (main_view == 'denoised')


def test_diffkg_is_deterministic_and_restores_best():
    results = [make_trainer('diffkg', seed=3).fit(3, patience=3)
               for _ in range(2)]
    assert results[0].test == results[1].test
    assert [r['loss'] for r in results[0].history] == \
        [r['loss'] for r in results[1].history]
    best = results[0].history[results[0].best_epoch - 1]
    assert results[0].extra['kg_edges_kept'] == best['kg_edges_kept']


def test_diffkg_without_diffusion_uses_the_original_kg():
    trainer = make_trainer('diffkg', model=dict(diffusion=False))
    before = [p.detach().clone() for p in trainer.model.denoiser.parameters()]
    record = trainer.train_epoch(1)
    assert trainer.recipe.loop.denoised_kg is trainer.recipe.loop.sampled_kg
    assert 'diff' not in record and 'denoiser_loss' not in record
    assert all(torch.equal(p, q) for p, q in
               zip(trainer.model.denoiser.parameters(), before))


@pytest.mark.parametrize('name,term', [('diffkg', 'bpr'),
                                       ('lightgcn', 'loss')])
def test_non_finite_loss_names_the_term(name, term):
    trainer = make_trainer(name)
    step = trainer.context.step

    def diverged(optimizers, loss, name='loss', **terms):
        nan = torch.tensor(float('nan'))
        terms = {k: v * nan if k == term else v for k, v in terms.items()}
        step(optimizers, loss * nan if term == name else loss, name,
             **terms)

    trainer.context.step = diverged
    with pytest.raises(NonFiniteLossError,
                       match=f"(the loss term|the training loss) "
                       f"'{term}' is nan in epoch 1"):
        trainer.fit(2)


@pytest.mark.parametrize('kg_dropout', [0.0, 0.5])
def test_published_code_views(kg_dropout):
    trainer = make_trainer('diffkg', model=dict(views='published-code',
                                                kg_dropout=kg_dropout))
    model, recipe = trainer.model, trainer.recipe
    encoded = []
    original = model.kg_encoder.forward

    def spy(entity_emb, relation_emb, kg_edge_index, kg_edge_type):
        encoded.append(kg_edge_index)
        return original(entity_emb, relation_emb, kg_edge_index, kg_edge_type)

    model.kg_encoder.forward = spy
    trainer.train_epoch(1)
    loop = recipe.loop
    denoised, sampled = loop.denoised_kg[0], loop.sampled_kg[0]
    assert not torch.equal(denoised, sampled)
    # Both training views of every step encode the sampled original KG:
    assert len(encoded) == 4 and all(e is sampled for e in encoded)
    # Evaluation encodes with the denoised KG (the main view):
    encoded.clear()
    trainer.evaluate(trainer.valid_evaluator)
    assert len(encoded) == 1 and encoded[0] is denoised
    # The two views differ by their dropout masks only:
    model.train()
    views = model.views(loop.sampled_kg, loop.denoised_kg)
    (user1, item1), (user2, item2) = model._embed(
        trainer.context.graph.adjacency(True), views)
    equal = torch.equal(user1, user2) and torch.equal(item1, item2)
    assert equal == (kg_dropout == 0.0)


def test_results_record_the_commit_read_at_the_start(monkeypatch):
    from diffkg_pyg import version
    from diffkg_pyg.train.results import code_record

    head = version.package_commit()
    version.package_commit.cache_clear()
    make_trainer('lightgcn')

    def moved(*args, **kwargs):  # A read now would see a later HEAD.
        raise AssertionError('the commit is read after the start')

    monkeypatch.setattr(version.subprocess, 'run', moved)
    try:
        assert code_record()['commit'] == head
    finally:
        version.package_commit.cache_clear()
