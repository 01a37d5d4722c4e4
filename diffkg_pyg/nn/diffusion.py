import torch
from torch import Tensor

__all__ = ['GaussianDiffusion']


class GaussianDiffusion(torch.nn.Module):
    r"""The Gaussian diffusion of the `"DiffKG: Knowledge Graph Diffusion
    Model for Recommendation" <https://arxiv.org/abs/2312.16890>`_ paper
    (from DiffRec), with the authors' schedule.

    With :math:`v_i = \mathrm{linspace}(s\,v_\min, s\,v_\max, T)_i` and
    :math:`\bar\alpha'_i = 1 - v_i`:

    .. math::
        \beta_0 = 10^{-4},\quad
        \beta_i = \min\left(1 - \bar\alpha'_i / \bar\alpha'_{i-1},
        0.999\right),\quad
        \bar\alpha_i = \prod_{j \le i} (1 - \beta_j),

    the forward process
    :math:`q(\mathbf{x}_t | \mathbf{x}_0) = \mathcal{N}(\sqrt{\bar\alpha_t}
    \mathbf{x}_0, (1 - \bar\alpha_t)\mathbf{I})`, the loss weights
    :math:`w_t = \mathrm{SNR}(t - 1) - \mathrm{SNR}(t)` with
    :math:`\mathrm{SNR} = \bar\alpha / (1 - \bar\alpha)` and :math:`w_0 = 1`,
    and the posterior-mean coefficients

    .. math::
        c_{1,t} = \frac{\beta_t \sqrt{\bar\alpha_{t-1}}}{1 - \bar\alpha_t},
        \quad
        c_{2,t} = \frac{(1 - \bar\alpha_{t-1})\sqrt{1 - \beta_t}}
        {1 - \bar\alpha_t}.

    All schedules are float64 buffers.

    Args:
        steps (int, optional): Diffusion steps :math:`T`. (default: :obj:`5`)
        noise_scale (float, optional): :math:`s`. (default: :obj:`0.1`)
        noise_min (float, optional): :math:`v_\min`. (default: :obj:`1e-4`)
        noise_max (float, optional): :math:`v_\max`. (default: :obj:`0.02`)
    """
    def __init__(self, steps: int = 5, noise_scale: float = 0.1,
                 noise_min: float = 1e-4, noise_max: float = 0.02) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"'steps' must be >= 1 (got {steps})")
        if not 0 < noise_min <= noise_max < 1:
            raise ValueError(f"need 0 < 'noise_min' <= 'noise_max' < 1 (got "
                             f"{noise_min}, {noise_max})")
        if noise_scale <= 0:
            raise ValueError(
                f"'noise_scale' must be > 0 (got {noise_scale})")
        self.steps = steps
        self.noise_scale = noise_scale
        self.noise_min = noise_min
        self.noise_max = noise_max

        variance = torch.linspace(noise_scale * noise_min,
                                  noise_scale * noise_max, steps,
                                  dtype=torch.float64)
        alpha_bar = 1.0 - variance
        betas = torch.empty(steps, dtype=torch.float64)
        betas[1:] = (1.0 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
        betas[0] = 1e-4  # The authors overwrite beta_0.
        acp = torch.cumprod(1.0 - betas, dim=0)
        acp_prev = torch.cat([acp.new_ones(1), acp[:-1]])
        self.register_buffer('betas', betas)
        self.register_buffer('alphas_cumprod', acp)
        self.register_buffer('alphas_cumprod_prev', acp_prev)
        self.register_buffer('posterior_mean_coef1',
                             betas * acp_prev.sqrt() / (1.0 - acp))
        self.register_buffer('posterior_mean_coef2',
                             (1.0 - acp_prev) * (1.0 - betas).sqrt() /
                             (1.0 - acp))
        snr = acp / (1.0 - acp)
        weight = torch.cat([snr.new_ones(1), snr[:-1] - snr[1:]])
        self.register_buffer('loss_weight', weight)

    def q_sample(self, x_start: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        r"""Samples :math:`\mathbf{x}_t` given :math:`\mathbf{x}_0`, the step
        of every entry and standard normal :obj:`noise` (all of one
        shape)."""
        acp = self.alphas_cumprod[t]
        return (acp.sqrt() * x_start + (1.0 - acp).sqrt() * noise).to(
            x_start.dtype)

    def posterior_mean(self, x_start_pred: Tensor, x_t: Tensor,
                       t: Tensor) -> Tensor:
        r"""The mean of :math:`q(\mathbf{x}_{t-1} | \mathbf{x}_t,
        \hat{\mathbf{x}}_0)`: :math:`c_{1,t} \hat{\mathbf{x}}_0 +
        c_{2,t} \mathbf{x}_t`."""
        return (self.posterior_mean_coef1[t] * x_start_pred +
                self.posterior_mean_coef2[t] * x_t).to(x_t.dtype)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(steps={self.steps}, '
                f'noise_scale={self.noise_scale}, noise_min={self.noise_min}, '
                f'noise_max={self.noise_max})')
