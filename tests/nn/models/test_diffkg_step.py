r"""DiffKG's recommendation step against the reference step kept in
:func:`diffkg_pyg.testing.reference_recommendation_loss` (the code before
the step's speed work): the same loss and the same gradient of every
parameter, with dropout on and seeded, in every view setting."""
import pytest
import torch

from diffkg_pyg import DiffKG
from diffkg_pyg.data import USER_ITEM, RunGraph, synthetic_dataset
from diffkg_pyg.nn.models import DiffKGLoop
from diffkg_pyg.nn.models.diffkg import MAIN_VIEWS, VIEWS
from diffkg_pyg.testing import reference_recommendation_loss


@pytest.fixture(scope='module')
def data():
    return synthetic_dataset(num_users=40, num_items=50, num_clusters=4,
                             attributes_per_cluster=3,
                             interactions_per_user=6, seed=1)


def gradients(model, loss):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, params, allow_unused=True)


def check_step(data, **kwargs):
    torch.manual_seed(0)
    kwargs = {'embedding_dim': 8, 'num_kg_layers': 2,
              'denoiser_hidden_channels': 16, 'use_compile': False,
              **kwargs}
    model = DiffKG.from_data(data, **kwargs)
    generator = torch.Generator().manual_seed(0)
    graph = RunGraph.from_data(data)
    loop = DiffKGLoop(model, graph, generator)
    loop.rebuild(batch_size=16, generator=generator)
    train = data[USER_ITEM].edge_index
    user, pos = train[:, torch.randperm(train.size(1), generator=generator)
                      [:32]]
    neg = torch.randint(50, (32, ), generator=generator)
    adj = graph.adjacency(True)
    kgs = model.views(loop.sampled_kg, loop.denoised_kg)
    model.train()
    results = []
    for step in (model.loss, lambda *a: reference_recommendation_loss(
            model, *a)):
        torch.manual_seed(1)  # The same dropout masks.
        loss, terms = step(adj, *kgs, user, pos, neg, 32)
        results.append((loss, terms, gradients(model, loss)))
    (loss, terms, grads), (ref_loss, ref_terms, ref_grads) = results
    assert torch.allclose(loss, ref_loss, rtol=1e-5, atol=1e-7)
    for key in terms:
        assert torch.allclose(terms[key], ref_terms[key], rtol=1e-5,
                              atol=1e-7)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    for grad, ref_grad in zip(grads, ref_grads):
        if ref_grad is None:
            assert grad is None or not grad.any()
        else:
            # Float32 rounding, relative to the tensor's scale (at
            # temperature 0.01 both forms are 1e-5 off float64's 15).
            scale = float(ref_grad.abs().max())
            assert torch.allclose(grad, ref_grad, rtol=1e-4,
                                  atol=1e-5 * scale + 1e-7)


@pytest.mark.parametrize('views', VIEWS)
@pytest.mark.parametrize('main_view', MAIN_VIEWS)
@pytest.mark.parametrize('ssl_weight,temperature', [(0.1, 0.1), (0.5, 0.01),
                                                    (0.0, 0.1)])
def test_step_equals_reference_step(data, views, main_view, ssl_weight,
                                    temperature):
    check_step(data, views=views, main_view=main_view,
               ssl_weight=ssl_weight, temperature=temperature)


@pytest.mark.parametrize('num_layers', [0, 1, 3])
def test_step_equals_reference_step_at_any_depth(data, num_layers):
    check_step(data, num_layers=num_layers)
