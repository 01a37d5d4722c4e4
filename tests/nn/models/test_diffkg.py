import logging

import pytest
import torch

from diffkg_pyg import PRESETS, DiffKG
from diffkg_pyg.csr import to_csr
from diffkg_pyg.data import KG, USER_ITEM, RunGraph, synthetic_dataset
from diffkg_pyg.nn import SparseDenoiser
from diffkg_pyg.nn.denoiser import CompiledOrEager
from diffkg_pyg.nn.functional import info_nce
from diffkg_pyg.nn.kg_diffusion import sample_support
from diffkg_pyg.nn.models import DiffKGLoop
from diffkg_pyg.optim import SparseRowAdam
from diffkg_pyg.testing import literal_contrast_loss
from tests.nn.test_kg_diffusion import random_kg


@pytest.fixture(scope='module')
def data():
    return synthetic_dataset(num_users=30, num_items=40, num_clusters=4,
                             attributes_per_cluster=3,
                             interactions_per_user=6, seed=0)


def make_model(data, **kwargs):
    torch.manual_seed(0)
    kwargs = {'denoiser_hidden_channels': 16, 'embedding_dim': 8,
              'use_compile': False, **kwargs}
    return DiffKG.from_data(data, **kwargs)


def kg_of(data):
    return data[KG].edge_index, data[KG].edge_type


def test_from_data_and_repr(data):
    model = make_model(data)
    assert model.num_users == data['user'].num_nodes == 30
    assert model.num_items == 40
    assert model.num_entities == data['entity'].num_nodes
    assert model.num_relations == data[KG].num_relations
    assert model.user_emb.shape == (30, 8)
    assert model.relation_emb.shape == (data[KG].num_relations, 8)
    assert repr(model) == (f'DiffKG(30, 40, num_entities='
                           f'{model.num_entities}, num_relations='
                           f'{model.num_relations}, embedding_dim=8)')
    denoiser_ids = {id(p) for p in model.denoiser.parameters()}
    assert not denoiser_ids & {id(p) for p in model.recommender_parameters()}
    assert len(model.recommender_parameters()) + len(denoiser_ids) == \
        len(list(model.parameters()))


@pytest.mark.parametrize('num_layers', [0, 1, 2])
def test_get_embedding_is_sum_of_layers(data, num_layers):
    model = make_model(data, num_layers=num_layers).eval()
    train = data[USER_ITEM].edge_index
    adj = RunGraph.from_data(data).adjacency(True)
    user, item = model.get_embedding(adj, *kg_of(data))
    assert user.shape == (30, 8) and item.shape == (40, 8)

    # Dense transcription of the spec: A = D^-1/2 (B + I) D^-1/2.
    n = 30 + 40
    dense = torch.eye(n)
    dense[train[0], 30 + train[1]] = 1
    dense[30 + train[1], train[0]] = 1
    norm = dense.sum(1).pow(-0.5)
    dense = norm[:, None] * dense * norm[None, :]
    entity = model.kg_encoder(model.entity_emb, model.relation_emb,
                              *kg_of(data))
    x = torch.cat([model.user_emb, entity[:40]])
    expected = sum(torch.linalg.matrix_power(dense, layer) @ x
                   for layer in range(num_layers + 1))
    assert torch.allclose(torch.cat([user, item]), expected, atol=1e-5)


@pytest.mark.parametrize('kg_sample_size', [-1, 1, 3])
def test_sample_kg(data, kg_sample_size):
    model = make_model(data, kg_sample_size=kg_sample_size)
    edge_index, edge_type = kg_of(data)
    gen = torch.Generator().manual_seed(0)
    sampled, sampled_type = model.sample_kg(edge_index, edge_type, gen)
    count = torch.bincount(sampled[0], minlength=model.num_entities)
    degree = torch.bincount(edge_index[0], minlength=model.num_entities)
    if kg_sample_size == -1:
        assert torch.equal(sampled, edge_index)
    else:
        assert torch.equal(count, degree.clamp(max=kg_sample_size))
    key = edge_index[0] * model.num_entities + edge_index[1]
    position = torch.searchsorted(
        key, sampled[0] * model.num_entities + sampled[1])
    assert torch.equal(key[position],
                       sampled[0] * model.num_entities + sampled[1])
    assert torch.equal(edge_type[position], sampled_type)


@pytest.mark.parametrize('main_view', ['denoised', 'original'])
def test_views(data, main_view):
    model = make_model(data, main_view=main_view)
    sampled, denoised = ('s', 's'), ('d', 'd')
    main, second = model.views(sampled, denoised)
    assert (main, second) == ((denoised, sampled) if main_view == 'denoised'
                              else (sampled, denoised))


@pytest.mark.parametrize('temp', [0.1, 1.0])
@pytest.mark.parametrize('ssl_weight', [0.0, 0.5])
def test_loss_terms(data, temp, ssl_weight):
    model = make_model(data, temperature=temp, ssl_weight=ssl_weight,
                       l2_weight=1e-3).eval()
    adj = RunGraph.from_data(data).adjacency(True)
    main = kg_of(data)
    second = model.sample_kg(*main, torch.Generator().manual_seed(1))
    user, pos, neg = (torch.tensor([0, 1, 1]), torch.tensor([2, 3, 4]),
                      torch.tensor([5, 6, 7]))
    loss, terms = model.loss(adj, main, second, user, pos, neg, 4)

    with torch.no_grad():
        user_emb, item_emb = model.get_embedding(adj, *main)
        user_emb2, item_emb2 = model.get_embedding(adj, *second)
        diff = ((user_emb[user] * (item_emb[pos] - item_emb[neg])).sum(-1))
        bpr = -diff.sigmoid().log().sum() / 4
        reg = 1e-3 * sum(w.norm(2).square()
                         for w in model.recommender_parameters())
        ssl = (literal_contrast_loss(user_emb2, user_emb, user, temp) +
               literal_contrast_loss(item_emb2, item_emb, pos, temp))
    assert float(terms['bpr']) == pytest.approx(float(bpr), rel=1e-5)
    assert float(terms['reg']) == pytest.approx(float(reg), rel=1e-5)
    expected = bpr + reg
    if ssl_weight > 0:
        assert float(terms['ssl']) == pytest.approx(float(ssl), rel=1e-5)
        expected = expected + ssl_weight * ssl
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    loss.backward()
    assert model.denoiser.input_emb.weight.grad is None


def test_item_user_embedding(data):
    model = make_model(data)
    train = data[USER_ITEM].edge_index
    dense = torch.zeros(30, 40)
    dense[train[0], train[1]] = 1
    assert torch.allclose(model.item_user_embedding(train),
                          dense.t() @ model.user_emb.detach(), atol=1e-6)


@pytest.mark.parametrize('noise_gradient', [False, True])
def test_diffusion_loss_updates_input_rows(data, noise_gradient):
    # Without the noise's gradient only the support's rows of the input
    # table move; with it (the dense network's backward) the other rows
    # move too, by the noise they carried.
    model = make_model(data, noise_gradient=noise_gradient)
    edge_index, _ = kg_of(data)
    ptr, col = to_csr(edge_index, model.num_entities)
    heads = torch.tensor([0, 5])
    item_user = model.item_user_embedding(data[USER_ITEM].edge_index)
    optimizer = SparseRowAdam(model.denoiser.sparse_parameters())
    before = model.denoiser.input_emb.weight.detach().clone()
    gen = torch.Generator().manual_seed(0)
    loss, diff, ckgc = model.diffusion_loss(ptr, col, heads, item_user, gen)
    assert torch.isfinite(loss) and diff >= 0 and ckgc >= 0
    loss.backward()
    optimizer.step()
    support = sample_support(ptr, col, heads, model.num_entities,
                             generator=torch.Generator().manual_seed(0))
    changed = set(torch.nonzero(
        (model.denoiser.input_emb.weight != before).any(dim=1)).view(-1)
        .tolist())
    if noise_gradient:
        assert changed - set(support.index.tolist())
    else:
        assert changed <= set(support.index.tolist())
    assert model.entity_emb.grad is None and model.user_emb.grad is None


def test_rebuild_kg_keeps_existing_edges(data):
    model = make_model(data, keep_rate=1.0, rebuild_k=2)
    edge_index, edge_type = kg_of(data)
    out_index, out_type = model.rebuild_kg(edge_index, edge_type)
    key = edge_index[0] * model.num_entities + edge_index[1]
    out_key = out_index[0] * model.num_entities + out_index[1]
    position = torch.searchsorted(key, out_key)
    assert torch.equal(key[position], out_key)
    assert torch.equal(edge_type[position], out_type)
    assert 0 < out_key.numel() <= edge_index.size(1)


def test_noise_columns_chosen_once_from_the_device_and_kept(data,
                                                            monkeypatch):
    import diffkg_pyg.nn.models.diffkg as module
    model = make_model(data)
    assert model.noise_columns == 0  # The default: not chosen yet.
    loop = DiffKGLoop(model, RunGraph.from_data(data),
                      torch.Generator().manual_seed(0))
    heads = loop.shuffled_kg_heads(torch.Generator().manual_seed(0))[:4]
    loop.denoising_loss(heads)
    assert model.noise_columns == 16384  # On the CPU, at the first step.
    assert model.state_dict()['_extra_state']['noise_columns'] == 16384

    # A choice of the exact noise (a GPU with room) travels with the state:
    chosen = []
    monkeypatch.setattr(module, 'choose_noise_columns',
                        lambda *args: chosen.append(args) or None)
    exact = make_model(data)
    assert exact.choose_noise_columns(torch.device('cpu')) is None
    assert chosen == [(exact.num_entities, 16, torch.device('cpu'))]
    assert exact.choose_noise_columns() is None and len(chosen) == 1
    state = exact.state_dict()
    assert state['_extra_state']['noise_columns'] == -1
    monkeypatch.setattr(module, 'choose_noise_columns', lambda *args: 7)
    resumed = make_model(data)
    resumed.load_state_dict(state)
    assert resumed.choose_noise_columns() is None  # Not chosen again.
    assert make_model(data, noise_columns=-1).noise_columns is None
    assert make_model(data, noise_columns=5).choose_noise_columns() == 5

    state['_extra_state']['noise_columns'] = 0
    with pytest.raises(ValueError, match='saved noise_columns 0 is not'):
        make_model(data).load_state_dict(state)


@pytest.mark.parametrize('kwargs,match', [
    (dict(keep_rate=0.0),
     r"DiffKG: keep_rate must be in \(0, 1\] \(got 0.0\)"),
    (dict(keep_rate=1.5), 'DiffKG: keep_rate must be in'),
    (dict(rebuild_k=0), 'DiffKG: rebuild_k must be >= 1'),
    (dict(diffusion_steps=0), 'DiffKG: diffusion_steps must be >= 1'),
    (dict(sampling_steps=6),
     r'DiffKG: sampling_steps must be in \[0, diffusion_steps\]'),
    (dict(main_view=0), 'DiffKG: main_view must be a str'),
    (dict(main_view='x'),
     "DiffKG: main_view must be one of 'denoised', 'original'"),
    (dict(kg_sample_size=0), 'DiffKG: kg_sample_size must be >= 1 or -1'),
    (dict(temperature=0.0), 'DiffKG: temperature must be > 0'),
    (dict(ckgc_weight=1.5), r'DiffKG: ckgc_weight must be in \[0, 1\]'),
    (dict(num_entities=5), 'DiffKG: num_entities must be >= num_items'),
])
def test_bad_hyperparameters(kwargs, match):
    sizes = dict(num_users=3, num_items=6, num_entities=8, num_relations=2)
    with pytest.raises(ValueError, match=match):
        DiffKG(**{**sizes, **kwargs})


@pytest.mark.parametrize('name', sorted(PRESETS))
def test_presets_construct(data, name):
    model = make_model(data, **PRESETS[name])
    encoder = {'num_kg_layers': 'num_hops', 'kg_dropout': 'dropout',
               'kg_residual': 'res_lambda'}
    for key, value in PRESETS[name].items():
        if key in encoder:
            assert getattr(model.kg_encoder, encoder[key]) == value
        else:
            assert getattr(model, key) == value


@pytest.mark.slow  # A cold torch.compile.
def test_compiled_denoiser_step_matches_eager():
    kg = random_kg(num_entities=30, num_triplets=60)
    ptr, col = to_csr(kg.edge_index, kg.num_entities)
    support = sample_support(ptr, col, torch.tensor([0, 3, 7, 11]),
                             kg.num_entities,
                             generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 1, 2, 4])
    x = torch.rand(support.index.numel())
    outputs, grads = [], []
    for use_compile in (False, True):
        torch.manual_seed(0)
        model = SparseDenoiser(kg.num_entities, 16, 4, dropout=0.0,
                               use_compile=use_compile)
        out = model(x, support.ptr, support.index, t)
        out.square().sum().backward()
        outputs.append(out)
        grads.append(model.output_emb.weight.grad.to_dense())
    assert isinstance(model._support_output, CompiledOrEager)
    assert model._support_output.compiled is not None  # It did compile,
    assert model._support_output.backward_checked  # the backward too.
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


class _FailingBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError('backward compile failed')


def _fallback_messages(caplog):
    return [r.getMessage() for r in caplog.records
            if 'running' in r.getMessage()]


@pytest.mark.parametrize('failure', ['forward', 'backward', 'recompile'])
def test_compile_failure_falls_back_once(caplog, failure):
    calls = []

    def function(x):
        calls.append(x)
        return x * 2

    def broken(x):
        if failure == 'forward':
            raise RuntimeError('no compiler\nsecond line')
        if failure == 'backward':
            return _FailingBackward.apply(x)
        if len(calls_compiled) > 0:  # A later recompilation fails.
            raise RuntimeError('recompile failed')
        calls_compiled.append(x)
        return x * 2

    calls_compiled = []
    wrapper = CompiledOrEager(function)
    wrapper.compiled = broken
    x = torch.ones(3, requires_grad=True)
    with caplog.at_level(logging.WARNING, logger='diffkg_pyg'):
        for _ in range(3):
            out = wrapper(x)
            out.sum().backward()  # Eager after the fallback: no failure.
            assert torch.equal(out.detach(), 2 * torch.ones(3))
    messages = _fallback_messages(caplog)
    assert len(messages) == 1 and wrapper.compiled is None
    expected = {'forward': 'RuntimeError: no compiler',
                'backward': 'RuntimeError: backward compile failed',
                'recompile': 'RuntimeError: recompile failed'}[failure]
    assert expected in messages[0]
    assert len(calls) == (3 if failure != 'recompile' else 2)


def test_errors_of_the_function_itself_propagate(caplog):
    def function(x):
        raise ValueError('bad input')

    wrapper = CompiledOrEager(function)
    wrapper.compiled = function
    with caplog.at_level(logging.WARNING, logger='diffkg_pyg'):
        with pytest.raises(ValueError, match='bad input'):
            wrapper(torch.ones(2))
    assert wrapper.compiled is function and not _fallback_messages(caplog)


@pytest.mark.parametrize('chunk_size', [1, 7, 64])
@pytest.mark.parametrize('temperature', [0.2, 0.01])  # 0.01: max-shifted.
def test_info_nce_chunks_match_literal(chunk_size, temperature):
    torch.manual_seed(0)
    anchor = torch.randn(50, 8, requires_grad=True)
    positive = torch.randn(50, 8, requires_grad=True)
    index = torch.tensor([3, 3, 0, 49, 17])
    out = info_nce(anchor, positive, index, temperature, chunk_size)
    expected = literal_contrast_loss(anchor.double(), positive.double(),
                                     index, temperature)
    assert torch.allclose(out.double(), expected, rtol=1e-5)
    grads = torch.autograd.grad(out, [anchor, positive])
    expected_grads = torch.autograd.grad(expected, [anchor, positive])
    for grad, expected_grad in zip(grads, expected_grads):
        assert torch.allclose(grad, expected_grad, atol=1e-5)
