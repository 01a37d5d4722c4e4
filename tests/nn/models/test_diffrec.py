import copy
import math

import numpy as np
import pytest
import torch

from diffkg_pyg import DiffRec, TDiffRec
from diffkg_pyg.csr import to_csr


def _literal_loss(model, x, t, pt, noise, reweight, mean_type):
    # The authors' training_losses for given steps, divisors and noise.
    d = model.diffusion
    acp = d.alphas_cumprod.float()
    x_t = acp[t].sqrt()[:, None] * x + (1 - acp[t]).sqrt()[:, None] * noise
    out = model(x_t, t)
    target = x if mean_type == 'x0' else noise
    mse = ((target - out)**2).mean(dim=1)
    if not reweight:
        weight, loss = torch.ones(len(t), dtype=torch.float64), mse
    elif mean_type == 'x0':
        snr = d.alphas_cumprod / (1 - d.alphas_cumprod)
        weight = torch.where(t == 0, 1.0, snr[t - 1] - snr[t])
        loss = mse
    else:
        weight = (1 - d.alphas_cumprod[t]) / (
            (1 - d.alphas_cumprod_prev[t])**2 * (1 - d.betas[t]))
        weight = torch.where(t == 0, 1.0, weight)
        start = (torch.sqrt(1.0 / acp[t])[:, None] * x_t -
                 torch.sqrt(1.0 / acp[t] - 1)[:, None] * out)
        likelihood = ((x - start)**2 / 2.0).mean(dim=1)
        loss = torch.where(t == 0, likelihood, mse)
    return (weight * loss / pt).mean()


@pytest.mark.parametrize('mean_type', ['x0', 'eps'])
@pytest.mark.parametrize('reweight', [True, False])
def test_loss_equals_the_published_formula(mean_type, reweight):
    torch.manual_seed(0)
    model = DiffRec(30, (8, 12), dropout=0.0, mean_type=mean_type,
                    diffusion_steps=6, reweight=reweight, history_length=2)
    x = (torch.rand(16, 30) < 0.3).float()
    for step in range(4):  # Uniform at first, importance sampling later.
        reference = copy.deepcopy(model)
        loss, _ = model.loss(x, torch.Generator().manual_seed(step))
        generator = torch.Generator().manual_seed(step)
        t, pt = reference.sampler.sample(16, generator)
        noise = torch.randn(x.shape, generator=generator)
        expected = _literal_loss(reference, x, t, pt, noise, reweight,
                                 mean_type)
        assert torch.allclose(loss, expected.to(loss.dtype), rtol=1e-5)
    assert bool((model.sampler.count == 2).all())  # The sampler learnt.


def _literal_p_sample(model, x, noises):
    # The authors' p_sample (sampling_noise optional), noises given.
    d = model.diffusion
    x_t = x
    if model.sampling_steps > 0:
        acp = d.alphas_cumprod[model.sampling_steps - 1].float()
        x_t = acp.sqrt() * x + (1 - acp).sqrt() * noises.pop(0)
    for i in reversed(range(d.steps)):
        t = torch.full((x.size(0), ), i)
        out = model(x_t, t)
        if model.mean_type == 'eps':
            acp = d.alphas_cumprod[i].float()
            out = (1 / acp).sqrt() * x_t - (1 / acp - 1).sqrt() * out
        mean = (d.posterior_mean_coef1[i].float() * out +
                d.posterior_mean_coef2[i].float() * x_t)
        if model.sampling_noise and i > 0:
            log_var = torch.log(torch.cat([d.posterior_variance[1:2],
                                           d.posterior_variance[1:]]))[i]
            mean = mean + torch.exp(0.5 * log_var).float() * noises.pop(0)
        x_t = mean
    return x_t


@pytest.mark.parametrize('mean_type', ['x0', 'eps'])
@pytest.mark.parametrize('sampling_steps,sampling_noise',
                         [(0, False), (2, False), (3, True)])
def test_recommend_equals_the_published_reverse_pass(
        mean_type, sampling_steps, sampling_noise):
    torch.manual_seed(1)
    model = DiffRec(20, (16, ), mean_type=mean_type, diffusion_steps=4,
                    sampling_steps=sampling_steps,
                    sampling_noise=sampling_noise).eval()
    x = (torch.rand(5, 20) < 0.3).float()
    scores = model.recommend(x, torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    num_noises = (sampling_steps > 0) + (3 if sampling_noise else 0)
    noises = [torch.randn(x.shape, generator=generator)
              for _ in range(num_noises)]
    with torch.no_grad():
        expected = _literal_p_sample(model, x, noises)
    assert torch.allclose(scores, expected, atol=1e-5)


def test_dropout_and_norm_reach_the_denoiser():
    torch.manual_seed(0)
    model = DiffRec(10, (4, ), norm=True, dropout=0.5, diffusion_steps=2)
    x = torch.rand(3, 10)
    t = torch.zeros(3, dtype=torch.long)
    model.eval()
    assert torch.allclose(model(x, t), model(2 * x, t), atol=1e-6)  # norm
    model.train()
    assert not torch.allclose(model(x, t), model(x, t))  # dropout


def test_denoiser_sizes_mirror_the_authors_dims():
    model = DiffRec(50, (200, 600), time_channels=10)
    sizes = [(lin.in_features, lin.out_features)
             for lin in model.denoiser.lins]
    assert sizes == [(60, 600), (600, 200), (200, 600), (600, 50)]
    sizes = [(lin.in_features, lin.out_features)
             for lin in DiffRec(50, (1000, )).denoiser.lins]
    assert sizes == [(60, 1000), (1000, 50)]


def test_rows_and_time_weights_follow_the_authors():
    # Users 0, 2 with 3 and 1 interactions (chronological order), user 1
    # with none.
    edge_index = torch.tensor([[0, 0, 0, 2], [4, 1, 3, 2]])
    ptr, col = to_csr(edge_index, 3)
    model = TDiffRec(5, w_min=0.2, w_max=0.8, diffusion_steps=2)
    weight = model.input_weights(ptr)
    expected = np.concatenate([np.linspace(0.2, 0.8, 3),
                               np.linspace(0.2, 0.8, 1)])
    assert torch.allclose(weight, torch.from_numpy(expected).float())
    rows = model.rows(ptr, col, torch.tensor([2, 0, 1]), weight)
    dense = torch.zeros(3, 5)
    dense[0, 2] = 0.2
    dense[1, 4], dense[1, 1], dense[1, 3] = 0.2, 0.5, 0.8
    assert torch.allclose(rows, dense)
    binary = DiffRec(5, diffusion_steps=2)
    assert binary.input_weights(ptr) is None
    assert torch.equal(binary.rows(ptr, col, torch.tensor([2, 0, 1])),
                       (dense > 0).float())


@pytest.mark.parametrize('kwargs,match', [
    (dict(mean_type='v'), 'mean_type'),
    (dict(noise_schedule='sqrt'), 'noise_schedule'),
    (dict(sampling_steps=7, diffusion_steps=5), 'sampling_steps'),
    (dict(hidden_channels=()), 'hidden_channels'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiffRec(10, **kwargs)


def test_importance_weights_make_the_loss_unbiased():
    # E[L_t / (T p_t)] over t ~ p equals the uniform mean of L_t.
    model = DiffRec(4, diffusion_steps=5, history_length=1)
    sampler = model.sampler
    losses = torch.tensor([1.0, 2.0, 4.0, 0.5, 3.0], dtype=torch.float64)
    sampler.update(torch.arange(5), losses)
    p = sampler.probabilities()
    assert math.isclose(float((p * losses / (5 * p)).sum()),
                        float(losses.mean()), rel_tol=1e-12)


@pytest.mark.parametrize('fixed', [True, False])
def test_fixed_first_beta(fixed):
    from diffkg_pyg.nn.diffusion import GaussianDiffusion
    model = DiffRec(10, hidden_channels=(8, ), diffusion_steps=40,
                    noise_scale=0.005, noise_min=0.005, noise_max=0.01,
                    fixed_first_beta=fixed)
    schedule = GaussianDiffusion(40, 0.005, 0.005, 0.01, first_beta=None)
    beta = float(model.diffusion.betas[0])
    assert beta == (1e-5 if fixed else pytest.approx(
        float(schedule.betas[0])))
    assert float(schedule.betas[0]) == pytest.approx(2.5e-5)  # s * v_min.


def test_ldiffrec_does_not_fix_the_first_beta():
    from diffkg_pyg.nn.models import LDiffRec
    from diffkg_pyg.train import get_recipe
    model = LDiffRec(6, torch.tensor([0, 0, 0, 1, 1, 1]), latent_channels=4,
                     diffusion_steps=40, noise_scale=0.005, noise_min=0.005,
                     noise_max=0.02)
    assert float(model.diffrec.diffusion.betas[0]) != 1e-5
    recipe = get_recipe('ldiffrec')(preset='ml-1m')
    assert recipe.hparams['fixed_first_beta'] is False
    assert get_recipe('diffrec')().hparams['fixed_first_beta'] is True
    # The authors' name works:
    assert get_recipe('ldiffrec')(beta_fixed=True).hparams[
        'fixed_first_beta'] is True


@pytest.mark.parametrize('preset,expected', [
    ('amazon-book', dict(lr=1e-5, diffusion_steps=10, noise_scale=5e-4,
                         noise_min=1e-3, noise_max=5e-3, w_min=0.1)),
    ('yelp', dict(lr=1e-5, diffusion_steps=5, noise_scale=5e-3,
                  noise_min=1e-3, noise_max=1e-2, w_min=0.5))])
def test_tdiffrec_has_its_own_presets(preset, expected):
    from diffkg_pyg.train import get_recipe
    recipe = get_recipe('tdiffrec')(preset=preset)
    values = {**recipe.hparams, **recipe.preset_settings}
    assert {k: values[k] for k in expected} == expected


@pytest.mark.parametrize('name,preset,expected', [
    ('diffrec', 'ml-1m-noisy', dict(diffusion_steps=5, noise_scale=0.5,
                                    noise_min=1e-3, noise_max=1e-2, lr=1e-3,
                                    hidden_channels=(200, 600))),
    ('diffrec', 'amazon-book-noisy', dict(diffusion_steps=10, lr=5e-5,
                                          noise_scale=5e-3)),
    ('diffrec', 'yelp-noisy', dict(diffusion_steps=5, lr=1e-5,
                                   noise_scale=1e-3, noise_min=5e-4)),
    ('ldiffrec', 'ml-1m-noisy', dict(diffusion_steps=100, lr=5e-4,
                                     autoencoder_lr=1e-3, lamda=0.03)),
    ('ldiffrec', 'amazon-book-noisy', dict(lamda=0.07, lr=1e-4,
                                           autoencoder_lr=5e-4)),
    ('ldiffrec', 'amazon-book', dict(lamda=0.05, noise_scale=0.5)),
])
def test_released_presets(name, preset, expected):
    # Every preset resolves (its keys are declared), with the values of
    # the authors' released checkpoints.
    from diffkg_pyg.train import get_recipe
    recipe = get_recipe(name)(preset=preset)
    values = {**recipe.hparams, **recipe.preset_settings}
    assert {k: values[k] for k in expected} == expected
