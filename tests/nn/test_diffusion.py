import math

import pytest
import torch

from diffkg_pyg.nn import GaussianDiffusion


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
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianDiffusion(**kwargs)


def test_repr_and_buffers_follow_module():
    diffusion = GaussianDiffusion()
    assert repr(diffusion).startswith('GaussianDiffusion(steps=5')
    assert 'betas' in dict(diffusion.named_buffers())
