import math
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.utils import degree

__all__ = ['GaussianDiffusion', 'ImportanceStepSampler', 'SCHEDULES']

#: The noise schedules of DiffRec's code.
SCHEDULES = ('linear-var', 'linear', 'cosine')


def _betas(schedule: str, steps: int, noise_scale: float, noise_min: float,
           noise_max: float) -> Tensor:
    if schedule == 'cosine':  # Nichol and Dhariwal's alpha-bar, discretised.
        def alpha_bar(x: float) -> float:
            return math.cos((x + 0.008) / 1.008 * math.pi / 2)**2
        return torch.tensor([
            min(1.0 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps),
                0.999) for i in range(steps)
        ], dtype=torch.float64)
    variance = torch.linspace(noise_scale * noise_min,
                              noise_scale * noise_max, steps,
                              dtype=torch.float64)
    if schedule == 'linear':
        return variance
    alpha_bar = 1.0 - variance  # 'linear-var': the variance is linear.
    betas = torch.empty(steps, dtype=torch.float64)
    betas[0] = 1.0 - alpha_bar[0]
    betas[1:] = (1.0 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    return betas


class GaussianDiffusion(torch.nn.Module):
    r"""The Gaussian diffusion of the `"Diffusion Recommender Model"
    <https://arxiv.org/abs/2304.04971>`_ paper (DiffRec), which the
    `"DiffKG: Knowledge Graph Diffusion Model for Recommendation"
    <https://arxiv.org/abs/2312.16890>`_ paper uses, with the authors'
    schedules.

    The default schedule, :obj:`'linear-var'`, makes the variance linear:
    with :math:`v_i = \mathrm{linspace}(s\,v_\min, s\,v_\max, T)_i` and
    :math:`\bar\alpha'_i = 1 - v_i`,

    .. math::
        \beta_0 = v_0,\quad
        \beta_i = \min\left(1 - \bar\alpha'_i / \bar\alpha'_{i-1},
        0.999\right),\quad
        \bar\alpha_i = \prod_{j \le i} (1 - \beta_j);

    :obj:`'linear'` takes :math:`\beta_i = v_i`, :obj:`'cosine'` discretises
    :math:`\bar\alpha(x) = \cos^2(\frac{x + 0.008}{1.008}\frac{\pi}{2})`
    (:obj:`noise_*` unused). The authors' DiffKG and DiffRec (and
    T-DiffRec) codes then overwrite :math:`\beta_0` (:obj:`first_beta`:
    DiffKG :math:`10^{-4}`, DiffRec :math:`10^{-5}`); their L-DiffRec and
    LT-DiffRec do not (:obj:`first_beta=None`).

    The forward process is
    :math:`q(\mathbf{x}_t | \mathbf{x}_0) = \mathcal{N}(\sqrt{\bar\alpha_t}
    \mathbf{x}_0, (1 - \bar\alpha_t)\mathbf{I})`; the loss weights of an
    :math:`\mathbf{x}_0`-predicting model are
    :math:`w_t = \mathrm{SNR}(t - 1) - \mathrm{SNR}(t)` with
    :math:`\mathrm{SNR} = \bar\alpha / (1 - \bar\alpha)`, of an
    :math:`\boldsymbol\epsilon`-predicting one
    :math:`w^\epsilon_t = (1 - \bar\alpha_t) / ((1 - \bar\alpha_{t-1})^2
    (1 - \beta_t))`, both with :math:`w_0 = 1`; the posterior
    :math:`q(\mathbf{x}_{t-1} | \mathbf{x}_t, \mathbf{x}_0)` has mean
    :math:`c_{1,t} \mathbf{x}_0 + c_{2,t} \mathbf{x}_t` and variance
    :math:`\tilde\beta_t` with

    .. math::
        c_{1,t} = \frac{\beta_t \sqrt{\bar\alpha_{t-1}}}{1 - \bar\alpha_t},
        \quad
        c_{2,t} = \frac{(1 - \bar\alpha_{t-1})\sqrt{1 - \beta_t}}
        {1 - \bar\alpha_t},\quad
        \tilde\beta_t = \frac{\beta_t (1 - \bar\alpha_{t-1})}
        {1 - \bar\alpha_t}.

    All schedules are float64 buffers.

    Args:
        steps (int, optional): Diffusion steps :math:`T`. (default: :obj:`5`)
        noise_scale (float, optional): :math:`s`. (default: :obj:`0.1`)
        noise_min (float, optional): :math:`v_\min`. (default: :obj:`1e-4`)
        noise_max (float, optional): :math:`v_\max`. (default: :obj:`0.02`)
        schedule (str, optional): :obj:`'linear-var'`, :obj:`'linear'` or
            :obj:`'cosine'`. (default: :obj:`'linear-var'`)
        first_beta (float, optional): The value :math:`\beta_0` is
            overwritten with (:obj:`None`: the schedule's).
            (default: :obj:`1e-4`, DiffKG's)
    """
    def __init__(self, steps: int = 5, noise_scale: float = 0.1,
                 noise_min: float = 1e-4, noise_max: float = 0.02,
                 schedule: str = 'linear-var',
                 first_beta: Optional[float] = 1e-4) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"'steps' must be >= 1 (got {steps})")
        if schedule not in SCHEDULES:
            raise ValueError(f"'schedule' must be one of {SCHEDULES} (got "
                             f'{schedule!r})')
        if schedule != 'cosine':
            if not 0 < noise_min <= noise_max < 1:
                raise ValueError(f"need 0 < 'noise_min' <= 'noise_max' < 1 "
                                 f'(got {noise_min}, {noise_max})')
            if noise_scale <= 0:
                raise ValueError(
                    f"'noise_scale' must be > 0 (got {noise_scale})")
        if first_beta is not None and not 0 < first_beta < 1:
            raise ValueError(f"'first_beta' must lie in (0, 1) (got "
                             f'{first_beta})')
        self.steps = steps
        self.noise_scale = noise_scale
        self.noise_min = noise_min
        self.noise_max = noise_max
        self.schedule = schedule
        self.first_beta = first_beta

        betas = _betas(schedule, steps, noise_scale, noise_min, noise_max)
        if first_beta is not None:
            betas[0] = first_beta  # The authors overwrite beta_0.
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
        # Derived constants added after DiffKG's first release: not
        # persistent, so that saved DiffKG models load unchanged.
        variance = betas * (1.0 - acp_prev) / (1.0 - acp)
        self.register_buffer('posterior_variance', variance,
                             persistent=False)
        # As the authors: the log-variance of step 0 (zero) is clipped to
        # that of step 1.
        self.register_buffer(
            'posterior_log_variance',
            torch.cat([variance[1:2], variance[1:]]).log()
            if steps > 1 else variance.clamp(min=1e-20).log(),
            persistent=False)
        eps_weight = (1.0 - acp) / ((1.0 - acp_prev)**2 * (1.0 - betas))
        eps_weight[0] = 1.0
        self.register_buffer('eps_loss_weight', eps_weight, persistent=False)

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

    def predict_start_from_noise(self, x_t: Tensor, t: Tensor,
                                 noise: Tensor) -> Tensor:
        r""":math:`\hat{\mathbf{x}}_0 = (\mathbf{x}_t - \sqrt{1 -
        \bar\alpha_t}\,\hat{\boldsymbol\epsilon}) / \sqrt{\bar\alpha_t}`."""
        acp = self.alphas_cumprod[t]
        return ((1.0 / acp).sqrt() * x_t -
                (1.0 / acp - 1.0).sqrt() * noise).to(x_t.dtype)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(steps={self.steps}, '
                f'noise_scale={self.noise_scale}, noise_min={self.noise_min}, '
                f'noise_max={self.noise_max}, schedule={self.schedule!r})')


class ImportanceStepSampler(torch.nn.Module):
    r"""DiffRec's importance sampling of the diffusion step (from Nichol and
    Dhariwal's improved DDPM): until every step has :obj:`history` recorded
    losses, steps are drawn uniformly; then with probability

    .. math::
        p_t = (1 - u) \frac{\sqrt{\mathbb{E}[L_t^2]}}
        {\sum_{t'} \sqrt{\mathbb{E}[L_{t'}^2]}} + \frac{u}{T},

    the mean over each step's last :obj:`history` losses, and the loss of a
    draw is divided by :math:`T p_t` (so :math:`\mathbb{E}[L_t / (T p_t)]`
    is the mean over uniform steps).

    The histories are buffers (saved with the model, so training resumes
    exactly), updated in batch order without a Python loop: after
    :meth:`update`, step :math:`t`'s row holds its last
    :math:`\min(H, n_t)` losses, oldest first, as the authors' per-sample
    loop leaves it. Sampling inverts the cumulative distribution of
    :math:`p` (uniform or importance, chosen on the device: no host sync).

    Args:
        steps (int): :math:`T`.
        history (int, optional): :math:`H`. (default: :obj:`10`)
        uniform_prob (float, optional): :math:`u`. (default: :obj:`0.001`)
    """
    def __init__(self, steps: int, history: int = 10,
                 uniform_prob: float = 0.001) -> None:
        super().__init__()
        if steps < 1 or history < 1:
            raise ValueError(f"'steps' and 'history' must be >= 1 (got "
                             f'{steps}, {history})')
        if not 0.0 <= uniform_prob <= 1.0:
            raise ValueError(f"'uniform_prob' must lie in [0, 1] (got "
                             f'{uniform_prob})')
        self.steps = steps
        self.history_length = history
        self.uniform_prob = uniform_prob
        self.register_buffer('history',
                             torch.zeros(steps, history, dtype=torch.float64))
        self.register_buffer('count', torch.zeros(steps, dtype=torch.long))

    def probabilities(self) -> Tensor:
        r"""The current :math:`p` (uniform until every history is full),
        shape :obj:`[T]`, float64."""
        uniform = torch.full((self.steps, ), 1.0 / self.steps,
                             dtype=torch.float64, device=self.history.device)
        root = self.history.square().mean(dim=-1).sqrt()
        importance = root / root.sum()
        importance = importance * (1.0 - self.uniform_prob) + \
            self.uniform_prob / self.steps
        full = (self.count == self.history_length).all()
        return torch.where(full, importance, uniform)

    def sample(self, batch_size: int,
               generator: Optional[torch.Generator] = None
               ) -> Tuple[Tensor, Tensor]:
        r"""Draws :obj:`batch_size` steps; returns them and the divisors
        :math:`T p_t` (float64)."""
        p = self.probabilities()
        cdf = p.cumsum(0)
        u = torch.rand(batch_size, generator=generator, dtype=torch.float64,
                       device=p.device) * cdf[-1]
        t = torch.searchsorted(cdf, u, right=True).clamp(max=self.steps - 1)
        return t, p[t] * self.steps

    @torch.no_grad()
    def update(self, t: Tensor, loss: Tensor) -> None:
        r"""Appends the losses :obj:`loss` of the draws :obj:`t` (both
        :obj:`[batch_size]`) to the histories, in batch order."""
        T, H = self.steps, self.history_length
        t = t.view(-1)
        order = torch.sort(t, stable=True).indices
        t_sorted = t[order]
        # Counts by PyG's scatter count and writes through a spare last
        # cell (the dropped entries' target), not bincount and boolean
        # indices: no host sync on a GPU.
        new = degree(t, T, dtype=self.count.dtype)
        start = torch.cumsum(new, 0) - new
        rank = torch.arange(t.numel(), device=t.device) - start[t_sorted]
        total = self.count + new
        kept = total.clamp(max=H)
        shift = total - kept  # Entries of the sequence that fall out.
        out = self.history.new_zeros(T * H + 1)
        # Old entries j < count move to j - shift:
        j = torch.arange(H, device=t.device).expand(T, H)
        position = j - shift[:, None]
        keep = (j < self.count[:, None]) & (position >= 0)
        row = torch.arange(T, device=t.device)[:, None].expand(T, H)
        out[torch.where(keep, row * H + position, T * H).view(-1)] = \
            self.history.view(-1)
        # New entries go to count + rank - shift:
        position = self.count[t_sorted] + rank - shift[t_sorted]
        out[torch.where(position >= 0, t_sorted * H + position, T * H)] = \
            loss.detach().view(-1)[order].to(out.dtype)
        self.history.copy_(out[:T * H].view(T, H))
        self.count.copy_(kept)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(steps={self.steps}, '
                f'history={self.history_length})')
