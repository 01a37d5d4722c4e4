import math

import pytest
import torch

from diffkg_pyg.nn import GaussianDiffusion, ImportanceStepSampler


def test_default_schedule_hand_computed():
    diffusion = GaussianDiffusion()  # T=5, s=0.1, 1e-4 .. 0.02
    # variance = linspace(1e-5, 2e-3, 5) = 1e-5 + k * 4.975e-4
    variance = [1e-5 + k * 4.975e-4 for k in range(5)]
    alpha_bar = [1 - v for v in variance]
    betas = [1e-4] + [1 - alpha_bar[i] / alpha_bar[i - 1]
                      for i in range(1, 5)]
    assert diffusion.betas.dtype == torch.float64
    assert diffusion.betas.tolist() == pytest.approx(betas, rel=1e-12)
    acp = []
    for beta in betas:
        acp.append((acp[-1] if acp else 1.0) * (1 - beta))
    assert diffusion.alphas_cumprod.tolist() == pytest.approx(acp, rel=1e-12)
    # Step 1 by hand: beta_1 = 1 - 0.9994925 / 0.99999 ~ 4.97505e-4.
    assert betas[1] == pytest.approx(4.975049750e-4, rel=1e-8)
    snr = [a / (1 - a) for a in acp]
    weight = [1.0] + [snr[i - 1] - snr[i] for i in range(1, 5)]
    assert diffusion.loss_weight.tolist() == pytest.approx(weight, rel=1e-9)
    prev = [1.0] + acp[:-1]
    coef1 = [b * math.sqrt(p) / (1 - a) for b, p, a in zip(betas, prev, acp)]
    coef2 = [(1 - p) * math.sqrt(1 - b) / (1 - a)
             for b, p, a in zip(betas, prev, acp)]
    assert diffusion.posterior_mean_coef1.tolist() == pytest.approx(coef1)
    assert diffusion.posterior_mean_coef2.tolist() == pytest.approx(coef2)
    assert diffusion.posterior_mean_coef1[0] == pytest.approx(1.0)
    assert diffusion.posterior_mean_coef2[0] == pytest.approx(0.0)


def test_q_sample_and_posterior_mean():
    diffusion = GaussianDiffusion(steps=3)
    x = torch.rand(4, 6)
    noise = torch.randn(4, 6)
    t = torch.tensor([0, 1, 2, 2])[:, None].expand(4, 6)
    out = diffusion.q_sample(x, t, noise)
    acp = diffusion.alphas_cumprod[t]
    assert out.dtype == torch.float32
    assert torch.allclose(out, (acp.sqrt() * x + (1 - acp).sqrt() * noise)
                          .float())
    mean = diffusion.posterior_mean(x, out, t)
    c1 = diffusion.posterior_mean_coef1[t]
    c2 = diffusion.posterior_mean_coef2[t]
    assert torch.allclose(mean, (c1 * x + c2 * out).float())


@pytest.mark.parametrize('kwargs,match', [
    (dict(steps=0), "'steps' must be >= 1"),
    (dict(noise_min=0.1, noise_max=0.01), 'noise_min'),
    (dict(noise_scale=0.0), "'noise_scale' must be > 0"),
    (dict(schedule='sqrt'), "'schedule' must be one of"),
    (dict(first_beta=1.5), "'first_beta'"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianDiffusion(**kwargs)


def test_repr_and_buffers_follow_module():
    diffusion = GaussianDiffusion()
    assert repr(diffusion).startswith('GaussianDiffusion(steps=5')
    assert 'betas' in dict(diffusion.named_buffers())


def test_diffrec_schedules_hand_computed():
    # linear: beta = linspace(s * min, s * max, T), beta_0 overwritten.
    d = GaussianDiffusion(3, 0.5, 0.01, 0.03, 'linear', first_beta=1e-5)
    assert d.betas.tolist() == pytest.approx([1e-5, 0.01, 0.015], rel=1e-12)
    # linear-var without the overwrite: beta_0 is the first variance.
    d = GaussianDiffusion(3, 0.5, 0.01, 0.03, 'linear-var', first_beta=None)
    v = [0.005, 0.01, 0.015]
    betas = [v[0], 1 - (1 - v[1]) / (1 - v[0]), 1 - (1 - v[2]) / (1 - v[1])]
    assert d.betas.tolist() == pytest.approx(betas, rel=1e-12)
    # cosine: 1 - abar((i + 1) / T) / abar(i / T).
    d = GaussianDiffusion(4, schedule='cosine', first_beta=None)

    def abar(x):
        return math.cos((x + 0.008) / 1.008 * math.pi / 2)**2
    cosine = [min(1 - abar((i + 1) / 4) / abar(i / 4), 0.999)
              for i in range(4)]
    assert d.betas.tolist() == pytest.approx(cosine, rel=1e-12)
    # Posterior variance (log clipped at step 0) and the eps weights.
    d = GaussianDiffusion(3, 0.5, 0.01, 0.03, first_beta=1e-5)
    b = d.betas.tolist()
    acp = [1 - b[0], (1 - b[0]) * (1 - b[1]),
           (1 - b[0]) * (1 - b[1]) * (1 - b[2])]
    prev = [1.0] + acp[:2]
    var = [b[i] * (1 - prev[i]) / (1 - acp[i]) for i in range(3)]
    assert var[0] == 0.0
    assert d.posterior_variance.tolist() == pytest.approx(var, abs=1e-15)
    assert d.posterior_log_variance.tolist() == pytest.approx(
        [math.log(var[1]), math.log(var[1]), math.log(var[2])])
    eps = [1.0] + [(1 - acp[i]) / ((1 - prev[i])**2 * (1 - b[i]))
                   for i in (1, 2)]
    assert d.eps_loss_weight.tolist() == pytest.approx(eps, rel=1e-12)
    x, noise = torch.rand(2, 3), torch.randn(2, 3)
    t = torch.tensor([[1], [2]])
    x_t = d.q_sample(x, t, noise)
    assert torch.allclose(d.predict_start_from_noise(x_t, t, noise), x,
                          atol=1e-5)


def _literal_update(history, count, t, loss):
    # The authors' per-sample loop over the batch.
    history, count = history.clone(), count.clone()
    H = history.size(1)
    for step, value in zip(t.tolist(), loss.tolist()):
        if count[step] == H:
            history[step, :-1] = history[step, 1:].clone()
            history[step, -1] = value
        else:
            history[step, count[step]] = value
            count[step] += 1
    return history, count


@pytest.mark.parametrize('seed', range(5))
def test_sampler_update_equals_the_authors_loop(seed):
    generator = torch.Generator().manual_seed(seed)
    sampler = ImportanceStepSampler(4, history=3)
    history, count = sampler.history.clone(), sampler.count.clone()
    for size in (1, 5, 2, 9, 30):
        t = torch.randint(4, (size, ), generator=generator)
        loss = torch.rand(size, generator=generator, dtype=torch.float64)
        history, count = _literal_update(history, count, t, loss)
        sampler.update(t, loss)
        assert torch.equal(sampler.count, count)
        assert torch.equal(sampler.history, history)


def test_sampler_probabilities_and_draws():
    sampler = ImportanceStepSampler(3, history=2, uniform_prob=0.1)
    assert sampler.probabilities().tolist() == pytest.approx([1 / 3] * 3)
    t, divisor = sampler.sample(4)
    assert torch.all(divisor == 1.0)  # Uniform until every step is full.
    sampler.update(torch.tensor([0, 0, 1, 1, 2]),
                   torch.tensor([1.0, 3.0, 2.0, 2.0, 4.0]))
    assert sampler.probabilities().tolist() == pytest.approx([1 / 3] * 3)
    sampler.update(torch.tensor([2]), torch.tensor([4.0]))
    root = [math.sqrt(5.0), 2.0, 4.0]
    p = [0.9 * r / sum(root) + 0.1 / 3 for r in root]
    assert sampler.probabilities().tolist() == pytest.approx(p, rel=1e-12)
    t, divisor = sampler.sample(200_000, torch.Generator().manual_seed(0))
    freq = torch.bincount(t, minlength=3).double() / t.numel()
    assert freq.tolist() == pytest.approx(p, abs=4e-3)  # ~4 sigma
    assert divisor.tolist() == pytest.approx([3 * p[i] for i in t.tolist()])
