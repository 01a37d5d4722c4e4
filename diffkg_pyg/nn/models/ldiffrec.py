r"""L-DiffRec (`"Diffusion Recommender Model"
<https://arxiv.org/abs/2304.04971>`_, Wang et al., SIGIR 2023): DiffRec in
the latent space of a clustered variational autoencoder."""
import dataclasses
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from diffkg_pyg.hyperparameters import (
    HyperParameter,
    hyperparameters,
    lookup,
    parse_int_list,
)
from diffkg_pyg.nn.models.diffrec import (
    WEIGHT_RANGE,
    DiffRec,
    check_weight_range,
    chronological_weights,
)

__all__ = ['LDiffRec', 'LTDiffRec', 'kmeans']

def kmeans(x: Tensor, k: int, generator: Optional[torch.Generator] = None,
           max_iterations: int = 1000, tol: float = 1e-4) -> Tensor:
    r"""Lloyd's k-means with Euclidean distance, as the authors'
    ``kmeans_pytorch``: :obj:`k` distinct points drawn at random as the
    first centres, then assignment and mean steps until the centres move by
    less than :obj:`tol` in total squared distance. Returns the cluster of
    every row of :obj:`x` :obj:`[num_points, channels]`,
    shape :obj:`[num_points]` (a centre left without points keeps its
    place).
    """
    if not 1 <= k <= x.size(0):
        raise ValueError(f"'k' must lie in [1, {x.size(0)}] (got {k})")
    x = x.double()
    first = torch.randperm(x.size(0), generator=generator,
                           device=x.device)[:k]
    centre = x[first]
    for _ in range(max_iterations):
        cluster = torch.cdist(x, centre).argmin(dim=1)
        total = torch.zeros_like(centre).index_add_(0, cluster, x)
        count = torch.bincount(cluster, minlength=k).to(x.dtype)
        new = torch.where(count[:, None] > 0,
                          total / count.clamp(min=1)[:, None], centre)
        shift = (new - centre).square().sum()
        centre = new
        if shift < tol:
            break
    return torch.cdist(x, centre).argmin(dim=1)


def _in_dims(value: str) -> int:
    # The authors' --in_dims '[300]': one encoder layer.
    sizes = parse_int_list(value)
    if len(sizes) != 1:
        raise ValueError(f'in_dims must be one latent size such as [300] '
                         f'(got {value!r}; one encoder layer per cluster is '
                         f'supported)')
    return sizes[0]


def _latent(name: str, **changes) -> HyperParameter:
    # DiffRec's declaration, for the latent denoiser (another default).
    return dataclasses.replace(lookup(DiffRec.hyperparameters)[name][0],
                               **changes)


@hyperparameters(
    HyperParameter('latent_channels', int, 'latent size (all clusters)',
                   doc=':math:`d`', aliases=('in_dims', ),
                   from_alias=_in_dims, alias_type=str, range='[1, inf)'),
    HyperParameter('encoder_dropout', float,
                   "dropout on the encoders' input", range='[0, 1)'),
    HyperParameter('reparam', bool, 'sample the latent in training',
                   doc='Sample the latent in training (else its mean)'),
    HyperParameter('lamda', float, 'weight of the diffusion loss',
                   doc=r':math:`\lambda`', range='[0, inf)'),
    HyperParameter('anneal_cap', float, 'floor of that weight',
                   doc=r':math:`\lambda_\mathrm{cap}`', range='[0, inf)'),
    HyperParameter('anneal_steps', int,
                   'epochs over which that weight decays',
                   doc=r':math:`S_\lambda`, in epochs', range='[1, inf)'),
    HyperParameter('vae_anneal_cap', float, 'cap of the KL weight',
                   doc=r':math:`\beta_\mathrm{cap}`', range='[0, inf)'),
    HyperParameter('vae_anneal_steps', int,
                   'steps over which the KL weight grows',
                   doc=r':math:`S_\beta`, in steps', range='[1, inf)'),
    # The latent denoiser's, with the authors' L-DiffRec names and
    # defaults (mlp_dims [300], steps 5, beta_fixed off):
    _latent('hidden_channels', aliases=('mlp_dims', )),
    _latent('diffusion_steps'),
    _latent('fixed_first_beta'),
    kwargs_of=DiffRec,
)
class LDiffRec(torch.nn.Module):
    r"""L-DiffRec from the `"Diffusion Recommender Model"
    <https://arxiv.org/abs/2304.04971>`_ paper: the items are clustered
    (:func:`kmeans` on item embeddings, outside the model), each cluster
    :math:`c`'s part of a user's row is encoded by its own layer,
    :math:`[\boldsymbol\mu_c \Vert \log\boldsymbol\sigma^2_c] =
    \tanh(\mathbf{W}_c\,\mathrm{dropout}(\mathbf{x}_{[c]}) + \mathbf{b}_c)`
    with a latent size :math:`d_c = \max(1, \lfloor d\, I_c / I \rfloor)`
    (the last cluster takes the rest of :math:`d`), the latent
    :math:`\mathbf{z} = [\boldsymbol\mu_c + \boldsymbol\sigma_c
    \boldsymbol\epsilon]_c` is diffused and denoised by a
    :class:`~diffkg_pyg.DiffRec` of size :math:`d`, and a linear decoder maps
    the denoised latent back to the items. The loss, with :math:`\lambda_e =
    \max((1 - e / S_\lambda)\lambda, \lambda_\mathrm{cap})` after
    :math:`e` epochs and :math:`\beta_s = \min(\beta_\mathrm{cap}, s /
    S_\beta)` after :math:`s` steps,

    .. math::
        \mathcal{L} = \lambda_e \mathcal{L}_\mathrm{diffusion} -
        \frac{1}{B}\sum_u \mathrm{dropout}(\mathbf{x}_u)^\top
        \log\mathrm{softmax}(\mathrm{dec}(\hat{\mathbf{z}}_{0,u})) +
        \beta_s\,\mathrm{KL}

    (with :obj:`reweight=False`: :math:`\mathcal{L}_\mathrm{diffusion} +
    \lambda_e(\ldots)`, as the authors' ``main.py``), where
    :math:`\hat{\mathbf{z}}_0` is the denoiser's prediction of the clean
    latent and the KL term is that of the Gaussian encoder against
    :math:`\mathcal{N}(\mathbf{0}, \mathbf{I})` (mean over users of the sum
    over latent dimensions). Inference encodes the history (the mean,
    without dropout), runs DiffRec's reverse pass in the latent space and
    decodes. The step counters of the annealing are buffers, so training
    resumes exactly.

    Only the authors' released architecture is supported: one encoder layer
    per cluster (``in_dims`` of length 1) and the one-layer decoder
    (``out_dims []``). The decoder's outputs are in item order (the
    authors' are in cluster order, a permutation of the same linear map).

    Args:
        num_items (int): :math:`I`.
        cluster (torch.Tensor): The cluster of every item,
            shape :obj:`[num_items]` (ids :math:`0, \ldots, C - 1`).
        **kwargs: The other arguments of :class:`~diffkg_pyg.DiffRec`, for
            the latent diffusion.
    """
    def __init__(self, num_items: int, cluster: Tensor,
                 latent_channels: int = 300, encoder_dropout: float = 0.1,
                 reparam: bool = True, lamda: float = 0.03,
                 anneal_cap: float = 0.005, anneal_steps: int = 500,
                 vae_anneal_cap: float = 0.3, vae_anneal_steps: int = 200,
                 hidden_channels: Sequence[int] = (300, ),
                 diffusion_steps: int = 5, fixed_first_beta: bool = False,
                 **kwargs) -> None:
        super().__init__()
        cluster = torch.as_tensor(cluster, dtype=torch.long).view(-1)
        if cluster.numel() != num_items:
            raise ValueError(f"'cluster' must give the cluster of each of "
                             f'the {num_items} items (got '
                             f'{cluster.numel()})')
        sizes = torch.bincount(cluster).tolist()
        if min(sizes) == 0:
            raise ValueError("'cluster' leaves a cluster id without items")
        if latent_channels < len(sizes):
            raise ValueError(f"'latent_channels' must be at least the number "
                             f'of clusters ({len(sizes)}; got '
                             f'{latent_channels})')
        self.num_items = num_items
        self.latent_channels = latent_channels
        self.encoder_dropout = encoder_dropout
        self.reparam = reparam
        self.lamda = lamda
        self.anneal_cap = anneal_cap
        self.anneal_steps = anneal_steps
        self.vae_anneal_cap = vae_anneal_cap
        self.vae_anneal_steps = vae_anneal_steps
        latent = [max(1, int(size / num_items * latent_channels))
                  for size in sizes[:-1]]
        latent.append(latent_channels - sum(latent))
        if latent[-1] < 1:
            raise ValueError(f"'latent_channels' {latent_channels} leaves "
                             f'the last cluster no latent dimension')
        self.latent_sizes: List[int] = latent
        self.cluster_sizes: List[int] = sizes  # (Read once, not per step.)
        self.register_buffer('cluster', cluster)
        self.register_buffer('order', torch.argsort(cluster, stable=True))
        self.register_buffer('num_updates', torch.zeros((), dtype=torch.long))
        self.encoders = torch.nn.ModuleList([
            torch.nn.Linear(size, 2 * d) for size, d in zip(sizes, latent)
        ])
        self.decoder = torch.nn.Linear(latent_channels, num_items)
        self.diffrec = DiffRec(latent_channels, hidden_channels,
                               diffusion_steps=diffusion_steps,
                               fixed_first_beta=fixed_first_beta, **kwargs)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in [*self.encoders, self.decoder]:  # The authors' AE init.
            torch.nn.init.xavier_normal_(lin.weight)
            torch.nn.init.zeros_(lin.bias)
        self.diffrec.reset_parameters()
        self.num_updates.zero_()

    def input_weights(self, ptr: Tensor) -> None:
        r"""The values of the input rows: all ones (see
        :meth:`DiffRec.input_weights <diffkg_pyg.DiffRec.input_weights>`)."""
        return None

    def autoencoder_parameters(self) -> List[torch.nn.Parameter]:
        r"""The encoders' and the decoder's parameters."""
        return [*self.encoders.parameters(), *self.decoder.parameters()]

    def denoiser_parameters(self) -> List[torch.nn.Parameter]:
        r"""The latent denoiser's parameters."""
        return list(self.diffrec.parameters())

    def encode(self, x: Tensor, generator: Optional[torch.Generator] = None
               ) -> Tuple[Tensor, Tensor, Tensor]:
        r"""Encodes rows :obj:`x` :obj:`[batch_size, num_items]`; returns
        the input after dropout (the reconstruction target), the latent
        :obj:`[batch_size, latent_channels]` and the KL term."""
        x = F.dropout(x, self.encoder_dropout, self.training)
        parts = torch.split(x[:, self.order],
                            self.cluster_sizes, dim=1)
        mu, logvar = [], []
        for part, encoder, d in zip(parts, self.encoders, self.latent_sizes):
            hidden = torch.tanh(encoder(part))
            mu.append(hidden[:, :d])
            logvar.append(hidden[:, d:])
        mu, logvar = torch.cat(mu, dim=-1), torch.cat(logvar, dim=-1)
        latent = mu
        if self.training and self.reparam:
            noise = torch.randn(mu.shape, generator=generator,
                                device=mu.device, dtype=mu.dtype)
            latent = mu + (0.5 * logvar).exp() * noise
        kl = -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(-1).mean()
        return x, latent, kl

    def decode(self, latent: Tensor) -> Tensor:
        r"""The item scores :obj:`[batch_size, num_items]` of latents."""
        return self.decoder(latent)

    def loss(self, x: Tensor, epoch: int,
             generator: Optional[torch.Generator] = None
             ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        r"""The training loss of rows :obj:`x` in epoch :obj:`epoch`
        (counted from 1); advances the step counter. Returns the loss and
        (detached) its diffusion, reconstruction and KL terms."""
        target, latent, kl = self.encode(x, generator)
        elbo, start, _ = self.diffrec.diffusion_loss(latent, generator)
        recon = -(F.log_softmax(self.decode(start), dim=1) *
                  target).sum(-1).mean()
        lamda = self.lamda
        if self.anneal_steps > 0:
            lamda = (1.0 - (epoch - 1) / self.anneal_steps) * self.lamda
        lamda = max(lamda, self.anneal_cap)
        anneal = self.vae_anneal_cap
        if self.vae_anneal_steps > 0:
            anneal = torch.clamp(self.num_updates / self.vae_anneal_steps,
                                 max=self.vae_anneal_cap)
        vae = recon + anneal * kl
        if self.diffrec.reweight:
            loss = lamda * elbo + vae
        else:
            loss = elbo + lamda * vae
        self.num_updates += 1
        return loss, elbo.detach(), recon.detach(), kl.detach()

    @torch.no_grad()
    def recommend(self, x: Tensor,
                  generator: Optional[torch.Generator] = None) -> Tensor:
        r"""The scores :obj:`[batch_size, num_items]` of the histories
        :obj:`x` (in evaluation mode)."""
        _, latent, _ = self.encode(x)
        return self.decode(self.diffrec.recommend(latent, generator))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_items}, '
                f'clusters={len(self.latent_sizes)}, '
                f'latent_channels={self.latent_channels})')


@hyperparameters(*WEIGHT_RANGE, kwargs_of=LDiffRec)
class LTDiffRec(LDiffRec):
    r"""LT-DiffRec from the `"Diffusion Recommender Model"
    <https://arxiv.org/abs/2304.04971>`_ paper: :class:`LDiffRec` whose
    rows weight each user's interactions in chronological order as
    :class:`~diffkg_pyg.TDiffRec` does
    (:func:`~diffkg_pyg.nn.models.diffrec.chronological_weights`); the
    weighted rows are encoded and reconstructed (the authors' code trains
    on them), the items masked at evaluation are the interactions.

    Args:
        num_items (int): :math:`I`.
        cluster (torch.Tensor): The cluster of every item.
        **kwargs: The arguments of :class:`LDiffRec`.
    """
    def __init__(self, num_items: int, cluster: Tensor, w_min: float = 0.1,
                 w_max: float = 1.0, **kwargs) -> None:
        self.w_min, self.w_max = check_weight_range(w_min, w_max)
        super().__init__(num_items, cluster, **kwargs)

    def input_weights(self, ptr: Tensor) -> Tensor:
        return chronological_weights(ptr, self.w_min, self.w_max)
