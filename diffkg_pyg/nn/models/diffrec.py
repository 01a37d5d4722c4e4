r"""DiffRec and T-DiffRec (`"Diffusion Recommender Model"
<https://arxiv.org/abs/2304.04971>`_, Wang et al., SIGIR 2023) on the
package's diffusion core."""
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from diffkg_pyg.csr import gather_rows, rows_of
from diffkg_pyg.hyperparameters import HyperParameter, Space, hyperparameters
from diffkg_pyg.nn.denoiser import MLPDenoiser
from diffkg_pyg.nn.diffusion import (
    SCHEDULES,
    GaussianDiffusion,
    ImportanceStepSampler,
)

__all__ = ['DiffRec', 'TDiffRec', 'MEAN_TYPES', 'WEIGHT_RANGE',
           'interaction_rows', 'chronological_weights', 'check_weight_range']

#: What the denoiser predicts: the clean row or the noise.
MEAN_TYPES = ('x0', 'eps')

def check_weight_range(w_min: float, w_max: float) -> Tuple[float, float]:
    r"""Returns :obj:`(w_min, w_max)`, raising unless
    :math:`0 \le w_\min \le w_\max`."""
    if not 0.0 <= w_min <= w_max:
        raise ValueError(f"need 0 <= 'w_min' <= 'w_max' (got {w_min}, "
                         f'{w_max})')
    return w_min, w_max


def chronological_weights(ptr: Tensor, w_min: float,
                          w_max: float) -> Tensor:
    r"""The weight of every interaction of users whose interactions are
    grouped by user in chronological order (row pointer :obj:`ptr`): the
    :math:`m`-th of :math:`M` gets :math:`w_\min + \frac{m - 1}{M - 1}
    (w_\max - w_\min)` (the authors' ``np.linspace(w_min, w_max, M)``; a
    single interaction gets :math:`w_\min`); shape :obj:`[ptr[-1]]`."""
    num = int(ptr[-1])
    row = rows_of(ptr, num)
    count = (ptr[1:] - ptr[:-1])[row].double()
    rank = torch.arange(num, device=ptr.device) - ptr[row]
    step = (w_max - w_min) / (count - 1).clamp(min=1)
    weight = w_min + rank * step
    weight = torch.where(rank == count - 1, torch.where(
        count > 1, w_max, w_min), weight)
    return weight.float()


def interaction_rows(ptr: Tensor, col: Tensor, users: Tensor, num_items: int,
                     weight: Optional[Tensor] = None) -> Tensor:
    r"""The dense interaction rows :obj:`[len(users), num_items]` of
    :obj:`users`, from CSR interactions :obj:`(ptr, col)` with values
    :obj:`weight` (per interaction; ones if :obj:`None`)."""
    row, item = gather_rows(ptr, col, users)
    x = torch.zeros(users.numel(), num_items, device=col.device)
    if weight is None:
        x[row, item] = 1.0
    else:
        _, index = gather_rows(ptr, torch.arange(col.numel(),
                                                 device=col.device), users)
        x[row, item] = weight[index].to(x.dtype)
    return x


@hyperparameters(
    HyperParameter('hidden_channels', tuple, "the denoiser's sizes (the "
                   'decoder side; the encoder mirrors them)',
                   doc="The denoiser's sizes",
                   aliases=('dims', ),
                   space=Space(choices=((300, ), (1000, ), (200, 600)))),
    HyperParameter('time_channels', int, 'size of the step embedding',
                   aliases=('emb_size', ), range='[1, inf)'),
    HyperParameter('norm', bool, "L2-normalise the denoiser's input"),
    HyperParameter('dropout', float, "the denoiser's input dropout",
                   range='[0, 1)'),
    HyperParameter('mean_type', str, 'what the denoiser predicts',
                   choices=MEAN_TYPES),
    HyperParameter('diffusion_steps', int, 'diffusion steps',
                   doc=':math:`T`', aliases=('steps', ), range='[1, inf)',
                   space=Space(2, 100, log=True)),
    HyperParameter('noise_schedule', str, 'the noise schedule',
                   choices=SCHEDULES),
    HyperParameter('noise_scale', float, 'noise scale of the schedule',
                   space=Space(1e-5, 0.1, log=True)),
    # Choices (the authors' grid and the defaults) so that noise_min <=
    # noise_max always:
    HyperParameter('noise_min', float, 'lower noise bound of the schedule',
                   space=Space(choices=(1e-4, 5e-4, 1e-3, 5e-3))),
    HyperParameter('noise_max', float, 'upper noise bound of the schedule',
                   space=Space(choices=(5e-3, 1e-2, 2e-2))),
    HyperParameter('reweight', bool, 'weight the loss by step (SNR '
                   'differences)'),
    HyperParameter('sampling_steps', int, 'noise steps before inference',
                   range='[0, inf)'),
    HyperParameter('sampling_noise', bool, 'sample in the reverse pass',
                   doc='Sample, rather than take the mean, in the reverse '
                   'pass'),
    HyperParameter('history_length', int, 'losses kept per step for '
                   'importance sampling', range='[1, inf)'),
    HyperParameter('fixed_first_beta', bool, 'fix the first beta at 1e-5 '
                   "(the authors' beta_fixed: on in DiffRec, off in "
                   'L-DiffRec)', doc=r'Fix :math:`\beta_0` at '
                   r":math:`10^{-5}`, as the authors' DiffRec does (their "
                   '``beta_fixed``, on in DiffRec and T-DiffRec, off in '
                   'L-DiffRec and LT-DiffRec)', aliases=('beta_fixed', )),
)
class DiffRec(torch.nn.Module):
    r"""DiffRec from the `"Diffusion Recommender Model"
    <https://arxiv.org/abs/2304.04971>`_ paper: a Gaussian diffusion over a
    user's interaction row :math:`\mathbf{x}_0 \in \{0, 1\}^I`, denoised by
    an :class:`~diffkg_pyg.nn.MLPDenoiser`.

    Training (:meth:`loss`) draws a step :math:`t` per row (importance
    sampling, :class:`~diffkg_pyg.nn.ImportanceStepSampler`), corrupts the
    row, :math:`\mathbf{x}_t = \sqrt{\bar\alpha_t}\mathbf{x}_0 +
    \sqrt{1 - \bar\alpha_t}\boldsymbol\epsilon`, and regresses the clean row
    (:obj:`mean_type='x0'`) or the noise (:obj:`'eps'`):

    .. math::
        \mathcal{L} = \frac{1}{B} \sum_{u} \frac{w_{t_u}}{T p_{t_u}}
        \frac{1}{I} \Vert \mathbf{y}_u - f_\theta(\mathbf{x}_{t_u},
        t_u) \Vert^2,

    with :math:`w_t = \mathrm{SNR}(t-1) - \mathrm{SNR}(t)` for
    :obj:`'x0'` (:math:`w^\epsilon_t`, and at :math:`t = 0` the
    :math:`\mathbf{x}_0` likelihood term, for :obj:`'eps'`; see
    :class:`~diffkg_pyg.nn.GaussianDiffusion`) when :obj:`reweight`, else
    :math:`w_t = 1`.

    Inference (:meth:`recommend`) starts from the clean history, adds
    :obj:`sampling_steps` steps of noise (none by default), then runs the
    posterior-mean reverse pass over all :math:`T` steps, :math:`t = T-1,
    \ldots, 0` (with :obj:`sampling_noise`, plus
    :math:`\exp(\frac12 \log\tilde\beta_t)\,\boldsymbol\epsilon` for
    :math:`t > 0`), as the authors' ``p_sample``; the result scores every
    item.

    Args:
        num_items (int): :math:`I`.

    The defaults are those of the authors' ``main.py``; the per-dataset
    settings are the presets of its recipe
    (:data:`~diffkg_pyg.train.recipes.diffrec.DIFFREC_PRESETS`).
    """
    def __init__(
        self,
        num_items: int,
        hidden_channels: Sequence[int] = (1000, ),
        time_channels: int = 10,
        norm: bool = False,
        dropout: float = 0.5,
        mean_type: str = 'x0',
        diffusion_steps: int = 100,
        noise_schedule: str = 'linear-var',
        noise_scale: float = 0.1,
        noise_min: float = 1e-4,
        noise_max: float = 0.02,
        reweight: bool = True,
        sampling_steps: int = 0,
        sampling_noise: bool = False,
        history_length: int = 10,
        fixed_first_beta: bool = True,
    ) -> None:
        super().__init__()
        if not 0 <= sampling_steps <= diffusion_steps:
            raise ValueError(f"'sampling_steps' must lie in [0, "
                             f"diffusion_steps] (got {sampling_steps})")
        self.num_items = num_items
        self.mean_type = mean_type
        self.reweight = reweight
        self.sampling_steps = sampling_steps
        self.sampling_noise = sampling_noise
        self.denoiser = MLPDenoiser(num_items, hidden_channels,
                                    time_channels, norm, dropout)
        self.diffusion = GaussianDiffusion(diffusion_steps, noise_scale,
                                           noise_min, noise_max,
                                           noise_schedule,
                                           first_beta=1e-5
                                           if fixed_first_beta else None)
        self.sampler = ImportanceStepSampler(diffusion_steps, history_length)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.denoiser.reset_parameters()
        self.sampler.history.zero_()
        self.sampler.count.zero_()

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        r"""The denoiser's output for rows :obj:`x` :obj:`[batch_size,
        num_items]` at steps :obj:`t` :obj:`[batch_size]`."""
        return self.denoiser(x, t)

    def input_weights(self, ptr: Tensor) -> Optional[Tensor]:
        r"""The value of every interaction in the input rows, given the
        users' interactions grouped by user in chronological order (row
        pointer :obj:`ptr`); :obj:`None`: all ones."""
        return None

    def rows(self, ptr: Tensor, col: Tensor, users: Tensor,
             weight: Optional[Tensor] = None) -> Tensor:
        r"""The dense input rows :obj:`[len(users), num_items]` of
        :obj:`users`, from the CSR interactions :obj:`(ptr, col)` and their
        values :obj:`weight` (:meth:`input_weights`; ones if :obj:`None`).
        """
        return interaction_rows(ptr, col, users, self.num_items, weight)

    def loss(self, x_start: Tensor,
             generator: Optional[torch.Generator] = None
             ) -> Tuple[Tensor, Tensor]:
        r"""The training loss of a batch of rows :obj:`x_start`
        :obj:`[batch_size, num_items]` (in training mode; updates the
        step sampler's histories). Returns the loss and its unweighted mean
        squared error (detached, for the log)."""
        loss, _, mse = self.diffusion_loss(x_start, generator)
        return loss, mse

    def diffusion_loss(self, x_start: Tensor,
                       generator: Optional[torch.Generator] = None
                       ) -> Tuple[Tensor, Tensor, Tensor]:
        r"""As :meth:`loss`, returning also the predicted clean rows
        :math:`\hat{\mathbf{x}}_0` (what L-DiffRec decodes): the loss,
        :math:`\hat{\mathbf{x}}_0` and the detached mean squared error."""
        diffusion = self.diffusion
        t, divisor = self.sampler.sample(x_start.size(0), generator)
        noise = torch.randn(x_start.shape, generator=generator,
                            device=x_start.device, dtype=x_start.dtype)
        x_t = diffusion.q_sample(x_start, t[:, None], noise)
        out = self(x_t, t)
        target = x_start if self.mean_type == 'x0' else noise
        mse = (target - out).square().mean(dim=-1)
        loss = mse
        if not self.reweight:
            weight = torch.ones_like(divisor)
        elif self.mean_type == 'x0':
            weight = diffusion.loss_weight[t]
        else:
            weight = diffusion.eps_loss_weight[t]
            start = diffusion.predict_start_from_noise(x_t, t[:, None], out)
            likelihood = ((x_start - start).square() / 2.0).mean(dim=-1)
            loss = torch.where(t == 0, likelihood, mse)
        weighted = weight * loss
        self.sampler.update(t, weighted)
        start = out if self.mean_type == 'x0' else \
            diffusion.predict_start_from_noise(x_t, t[:, None], out)
        return (weighted / divisor).mean(), start, mse.detach().mean()

    @torch.no_grad()
    def recommend(self, x_start: Tensor,
                  generator: Optional[torch.Generator] = None) -> Tensor:
        r"""The scores :obj:`[batch_size, num_items]` of the rows
        :obj:`x_start` (the users' histories): the inference pass above."""
        diffusion = self.diffusion
        batch = x_start.size(0)
        x_t = x_start
        if self.sampling_steps > 0:
            t = torch.full((batch, 1), self.sampling_steps - 1,
                           device=x_start.device, dtype=torch.long)
            noise = torch.randn(x_start.shape, generator=generator,
                                device=x_start.device, dtype=x_start.dtype)
            x_t = diffusion.q_sample(x_start, t, noise)
        for i in reversed(range(diffusion.steps)):
            t = torch.full((batch, ), i, device=x_start.device,
                           dtype=torch.long)
            out = self(x_t, t)
            if self.mean_type == 'eps':
                out = diffusion.predict_start_from_noise(x_t, t[:, None], out)
            mean = diffusion.posterior_mean(out, x_t, t[:, None])
            if self.sampling_noise and i > 0:
                noise = torch.randn(x_t.shape, generator=generator,
                                    device=x_t.device, dtype=x_t.dtype)
                std = (0.5 * diffusion.posterior_log_variance[i]).exp()
                mean = mean + std.to(x_t.dtype) * noise
            x_t = mean
        return x_t

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_items}, '
                f'hidden_channels={list(self.denoiser.hidden_channels)}, '
                f'mean_type={self.mean_type!r}, '
                f'diffusion_steps={self.diffusion.steps})')


#: T-DiffRec's and LT-DiffRec's interaction weights.
WEIGHT_RANGE = (
    HyperParameter('w_min', float, 'weight of the oldest interaction',
                   doc=r':math:`w_\min`', range='[0, inf)'),
    HyperParameter('w_max', float, 'weight of the newest interaction',
                   doc=r':math:`w_\max`', range='[0, inf)'),
)


@hyperparameters(*WEIGHT_RANGE, kwargs_of=DiffRec)
class TDiffRec(DiffRec):
    r"""T-DiffRec from the `"Diffusion Recommender Model"
    <https://arxiv.org/abs/2304.04971>`_ paper: :class:`DiffRec` whose
    input rows weight each user's :math:`M` interactions, in chronological
    order, by :math:`w_m = w_\min + \frac{m - 1}{M - 1}(w_\max - w_\min)`
    (the authors' ``np.linspace(w_min, w_max, M)``; a single interaction
    gets :math:`w_\min`). The weighted rows are both the input and the
    training target (the authors' code diffuses the weighted row); the
    items masked at evaluation are the interactions.

    Args:
        num_items (int): :math:`I`.
        **kwargs: The arguments of :class:`DiffRec`.
    """
    def __init__(self, num_items: int, w_min: float = 0.1,
                 w_max: float = 1.0, **kwargs) -> None:
        self.w_min, self.w_max = check_weight_range(w_min, w_max)
        super().__init__(num_items, **kwargs)

    def input_weights(self, ptr: Tensor) -> Tensor:
        return chronological_weights(ptr, self.w_min, self.w_max)
