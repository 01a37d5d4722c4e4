r"""The sparse, edge-level knowledge-graph denoiser of DiffKG."""
import logging
import math
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.utils import scatter

from diffkg_pyg.csr import rows_of

__all__ = ['SparseDenoiser', 'MLPDenoiser', 'CompiledOrEager',
           'timestep_embedding']

logger = logging.getLogger(__name__)


def timestep_embedding(t: Tensor, channels: int,
                       max_period: float = 10000.0) -> Tensor:
    r"""The sinusoidal embedding :math:`[\cos(t f_k), \sin(t f_k)]` with
    :math:`f_k = \exp(-\ln(\mathrm{max\_period})\, k / (d/2))`,
    shape :obj:`[len(t), channels]` (:obj:`channels` even)."""
    half = channels // 2
    freqs = torch.exp(-math.log(max_period) *
                      torch.arange(half, dtype=torch.float32, device=t.device)
                      / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _support_output(hidden: Tensor, output_rows: Tensor,
                    output_bias: Tensor, row: Tensor) -> Tensor:
    # The hot path: [num_support, H] gathers and products, fused when
    # compiled.
    return (hidden[row] * output_rows).sum(dim=-1) + output_bias


class CompiledOrEager:
    r"""Calls :obj:`torch.compile(function, dynamic=True)` and falls back to
    running :obj:`function` eagerly, logging it once, where compilation
    fails (no C compiler, an unsupported platform):

    * on the first call, in the forward and, the first time the output
      needs gradients, in the backward, which PyTorch compiles lazily at
      the first :meth:`~torch.Tensor.backward`: it is tried at once on that
      call's output (one extra backward pass, the graph retained);
    * on any later call whose compiled run raises while the eager function
      succeeds (a failing recompilation).

    An error the eager function raises too is the caller's and propagates
    (the compiled function is kept). A backward compiled only at a later
    recompilation runs inside :meth:`~torch.Tensor.backward` and cannot be
    guarded here; with dynamic shapes such recompilations are rare.

    Args:
        function (callable): The function to compile.
    """
    def __init__(self, function: Callable) -> None:
        self.function = function
        self.compiled = torch.compile(function, dynamic=True)
        self.backward_checked = False

    def __call__(self, *args, **kwargs):
        if self.compiled is None:
            return self.function(*args, **kwargs)
        try:
            out = self.compiled(*args, **kwargs)
            if not self.backward_checked and isinstance(out, Tensor) and \
                    out.requires_grad:
                inputs = [a for a in args
                          if isinstance(a, Tensor) and a.requires_grad]
                torch.autograd.grad(out, inputs, torch.ones_like(out),
                                    retain_graph=True, allow_unused=True)
                self.backward_checked = True
        except Exception as error:  # Compiler failures have many types.
            out = self.function(*args, **kwargs)  # Raises if not ours.
            logger.warning(
                'torch.compile failed here (%s: %s); running %s eagerly '
                'from now on', type(error).__name__,
                str(error).splitlines()[0] if str(error) else '',
                getattr(self.function, '__name__', 'the function'))
            self.compiled = None
        return out


def _check_time_and_dropout(time_channels: int, dropout: float) -> None:
    if time_channels < 2 or time_channels % 2:
        raise ValueError(f"'time_channels' must be even and >= 2 (got "
                         f"{time_channels})")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"'dropout' must lie in [0, 1) (got {dropout})")


def _normal_(tensor: Tensor, fan_in: int, fan_out: int) -> None:
    torch.nn.init.normal_(tensor, 0.0, math.sqrt(2.0 / (fan_in + fan_out)))


class SparseDenoiser(torch.nn.Module):
    r"""The DiffKG denoiser evaluated on a support set of entries per head,
    never on whole :math:`N`-wide rows.

    The published denoiser maps a noisy row :math:`\mathbf{x}_t \in
    \mathbb{R}^N` of the knowledge graph's adjacency to

    .. math::
        \hat{\mathbf{x}}_0 = \mathbf{W}_2 \tanh\left(\mathbf{W}_1
        [\mathrm{dropout}(\mathbf{x}_t / \Vert\mathbf{x}_t\Vert_2) \,\Vert\,
        \mathrm{Linear}(\mathrm{emb}(t))] + \mathbf{b}_1\right) +
        \mathbf{b}_2

    with :math:`\mathbf{W}_1 \in \mathbb{R}^{H \times (N + d_t)}` and
    :math:`\mathbf{W}_2 \in \mathbb{R}^{N \times H}`. Here a row is given by
    its support entries :math:`S_h` (values and entity indices): the input
    layer is the weighted sum of the columns of :math:`\mathbf{W}_1` over
    :math:`S_h` (an :class:`~torch.nn.EmbeddingBag` with per-sample
    weights), and the output is evaluated on :math:`S_h` only (the hidden
    state dotted with the output row of each entry's entity, plus its bias).
    What the row holds outside :math:`S_h` (its noise, in training) enters
    through :obj:`outside` (see :meth:`hidden`,
    :func:`~diffkg_pyg.nn.kg_noise.full_noise`); with it, or with
    :math:`S_h` all :math:`N` entities, this is exactly the dense network.
    Entity tables are sparse-gradient embeddings, so an optimiser
    such as :class:`torch.optim.SparseAdam` touches only the rows of the
    batch's support.

    Initialisation as the authors': weights
    :math:`\mathcal{N}(0, \sqrt{2 / (\mathrm{fan_{in}} +
    \mathrm{fan_{out}})})`, biases :math:`\mathcal{N}(0, 0.001)`.

    Args:
        num_entities (int): :math:`N`.
        hidden_channels (int, optional): :math:`H`. (default: :obj:`1000`)
        time_channels (int, optional): :math:`d_t`. (default: :obj:`10`)
        norm (bool, optional): L2-normalise the input row.
            (default: :obj:`True`)
        dropout (float, optional): Input dropout in training.
            (default: :obj:`0.5`)
        use_compile (bool, optional): Apply :func:`torch.compile` to the
            support-level output computation (the hot path), falling back to
            eager execution, with one log message, where compilation fails.
            (default: :obj:`False`)
    """
    def __init__(self, num_entities: int, hidden_channels: int = 1000,
                 time_channels: int = 10, norm: bool = True,
                 dropout: float = 0.5, use_compile: bool = False) -> None:
        super().__init__()
        _check_time_and_dropout(time_channels, dropout)
        self.num_entities = num_entities
        self.hidden_channels = hidden_channels
        self.time_channels = time_channels
        self.norm = norm
        self.dropout = dropout
        self.use_compile = use_compile
        self._support_output = (CompiledOrEager(_support_output)
                                if use_compile else _support_output)
        self.time_layer = torch.nn.Linear(time_channels, time_channels)
        # Input layer Linear(N + d_t, H), split into its entity columns
        # (sparse) and its time columns and bias (dense):
        self.input_emb = torch.nn.EmbeddingBag(num_entities, hidden_channels,
                                               mode='sum', sparse=True)
        self.input_time = torch.nn.Linear(time_channels, hidden_channels)
        # Output layer Linear(H, N), as rows gathered per support entry:
        self.output_emb = torch.nn.Embedding(num_entities, hidden_channels,
                                             sparse=True)
        self.output_bias = torch.nn.Embedding(num_entities, 1, sparse=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        d_t, hidden, n = (self.time_channels, self.hidden_channels,
                          self.num_entities)
        _normal_(self.time_layer.weight, d_t, d_t)
        _normal_(self.input_emb.weight, n + d_t, hidden)
        _normal_(self.input_time.weight, n + d_t, hidden)
        _normal_(self.output_emb.weight, hidden, n)
        for bias in (self.time_layer.bias, self.input_time.bias,
                     self.output_bias.weight):
            torch.nn.init.normal_(bias, 0.0, 0.001)

    def sparse_parameters(self):
        r"""The entity tables (sparse gradients)."""
        return [self.input_emb.weight, self.output_emb.weight,
                self.output_bias.weight]

    def dense_parameters(self):
        r"""The time-embedding layer and the input layer's time columns and
        bias (dense gradients)."""
        return (list(self.time_layer.parameters()) +
                list(self.input_time.parameters()))

    def forward(self, x: Tensor, ptr: Tensor, index: Tensor, t: Tensor,
                outside: Optional[Tuple[Tensor, Tensor]] = None,
                mask: Optional[Tensor] = None) -> Tensor:
        r"""Denoises a batch of rows given on their support: returns
        :math:`\hat{\mathbf{x}}_0` on the support entries,
        shape :obj:`[num_support]` (see :meth:`hidden` for the arguments).
        """
        return self.output(self.hidden(x, ptr, index, t, outside, mask),
                           ptr, index)

    def hidden(self, x: Tensor, ptr: Tensor, index: Tensor, t: Tensor,
               outside: Optional[Tuple[Tensor, Tensor]] = None,
               mask: Optional[Tensor] = None) -> Tensor:
        r"""The hidden layer :math:`\tanh(\mathbf{W}_1
        [\mathrm{dropout}(\mathbf{x}_t / \Vert\mathbf{x}_t\Vert) \Vert
        \mathrm{Linear}(\mathrm{emb}(t))] + \mathbf{b}_1)` of rows given
        on their support, shape :obj:`[batch_size, hidden_channels]`.

        Args:
            x (torch.Tensor): Values of the support entries, grouped by row,
                before dropout, shape :obj:`[num_support]`.
            ptr (torch.Tensor): Row pointer of the support entries,
                shape :obj:`[batch_size + 1]`.
            index (torch.Tensor): Entity of every support entry (at most
                once per row), shape :obj:`[num_support]`.
            t (torch.Tensor): Diffusion step of every row,
                shape :obj:`[batch_size]`.
            outside (tuple, optional): What the entries outside the support
                add to each row: their contribution to the input layer,
                :math:`\sum_{j \notin S} \mathbf{W}_{1,j}\,
                \mathrm{dropout}(x_j)` :obj:`[batch_size, hidden_channels]`
                (with the input table's gradient through it, see
                :func:`~diffkg_pyg.nn.kg_noise.full_noise`), and their
                squared norm
                :math:`\sum_{j \notin S} x_j^2` :obj:`[batch_size]`. With it
                the row is the full row, and the result equals the dense
                network's exactly. (default: :obj:`None`: the row is zero
                outside its support)
            mask (torch.Tensor, optional): The dropout keep mask (0/1) of
                the support entries, in training; drawn when not given.
        """
        batch_size = t.numel()
        if mask is not None and self.training and self.dropout > 0:
            x_in = x * mask / (1.0 - self.dropout)
        else:
            x_in = F.dropout(x, self.dropout, self.training)
        product = self.input_emb(index, ptr[:-1], per_sample_weights=x_in)
        if outside is not None:
            product = product + outside[0]
        if self.norm:
            row = rows_of(ptr, x.numel())
            square = scatter(x * x, row, 0, dim_size=batch_size)
            if outside is not None:
                square = square + outside[1]
            product = product / square.sqrt().clamp(min=1e-12)[:, None]
        return torch.tanh(product + self.time_input(t))

    def time_input(self, t: Tensor) -> Tensor:
        r"""The input layer's time term :math:`\mathbf{W}_{1,t}
        \mathrm{Linear}(\mathrm{emb}(t)) + \mathbf{b}_1`,
        shape :obj:`[len(t), hidden_channels]`."""
        time = self.time_layer(timestep_embedding(t, self.time_channels))
        return self.input_time(time)

    def output(self, hidden: Tensor, ptr: Tensor, index: Tensor) -> Tensor:
        r""":math:`\hat{\mathbf{x}}_0 = \mathbf{W}_2 \mathbf{h} +
        \mathbf{b}_2` at the support entries :obj:`index` (grouped by row
        with pointer :obj:`ptr`) of the rows' hidden states :obj:`hidden`;
        shape :obj:`[num_support]`."""
        # The entity tables are gathered eagerly (their sparse gradients do
        # not compile); the rest may be compiled:
        return self._support_output(hidden, self.output_emb(index),
                                    self.output_bias(index).view(-1),
                                    rows_of(ptr, index.numel()))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_entities}, '
                f'hidden_channels={self.hidden_channels}, '
                f'time_channels={self.time_channels})')



class MLPDenoiser(torch.nn.Module):
    r"""The denoiser of the `"Diffusion Recommender Model"
    <https://arxiv.org/abs/2304.04971>`_ paper (DiffRec): a multi-layer
    perceptron over whole rows :math:`\mathbf{x}_t \in \mathbb{R}^N`,

    .. math::
        \hat{\mathbf{x}} = f_L \circ \tanh \circ \cdots \circ \tanh
        \circ f_1\left([\mathrm{dropout}(\mathbf{x}_t) \,\Vert\,
        \mathrm{Linear}(\mathrm{emb}(t))]\right)

    (:math:`\mathbf{x}_t` L2-normalised first with :obj:`norm`), where the
    linear layers :math:`f_l` run through the sizes
    :math:`N + d_t \to c_K \to \cdots \to c_1 \to c_2 \to \cdots \to
    c_K \to N` for :obj:`hidden_channels` :math:`= [c_1, \ldots, c_K]`
    (the authors' :obj:`dims` give the decoder's sizes, the encoder mirrors
    them: :obj:`[200, 600]` is :math:`N + d_t \to 600 \to 200 \to 600
    \to N`). :class:`SparseDenoiser` is the one-hidden-layer case
    evaluated on a support.

    Initialisation as the authors': weights
    :math:`\mathcal{N}(0, \sqrt{2 / (\mathrm{fan_{in}} +
    \mathrm{fan_{out}})})`, biases :math:`\mathcal{N}(0, 0.001)`.

    Args:
        channels (int): :math:`N`.
        hidden_channels (list of int, optional): :math:`[c_1, \ldots,
            c_K]`. (default: :obj:`(1000, )`)
        time_channels (int, optional): :math:`d_t`. (default: :obj:`10`)
        norm (bool, optional): L2-normalise the input rows.
            (default: :obj:`False`)
        dropout (float, optional): Input dropout in training.
            (default: :obj:`0.5`)
    """
    def __init__(self, channels: int,
                 hidden_channels: Sequence[int] = (1000, ),
                 time_channels: int = 10, norm: bool = False,
                 dropout: float = 0.5) -> None:
        super().__init__()
        hidden_channels = tuple(int(c) for c in hidden_channels)
        if len(hidden_channels) == 0 or min(hidden_channels) < 1:
            raise ValueError(f"'hidden_channels' must be positive sizes (got "
                             f'{hidden_channels})')
        _check_time_and_dropout(time_channels, dropout)
        self.channels = channels
        self.hidden_channels = hidden_channels
        self.time_channels = time_channels
        self.norm = norm
        self.dropout = dropout
        sizes = ([channels + time_channels, *hidden_channels[::-1],
                  *hidden_channels[1:], channels])
        self.time_layer = torch.nn.Linear(time_channels, time_channels)
        self.lins = torch.nn.ModuleList([
            torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])
        ])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in [*self.lins, self.time_layer]:
            _normal_(lin.weight, lin.in_features, lin.out_features)
            torch.nn.init.normal_(lin.bias, 0.0, 0.001)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        r"""Denoises rows :obj:`x` :obj:`[batch_size, channels]` at steps
        :obj:`t` :obj:`[batch_size]`; returns
        :obj:`[batch_size, channels]`."""
        time = self.time_layer(timestep_embedding(t, self.time_channels))
        if self.norm:
            x = F.normalize(x, dim=-1)
        x = F.dropout(x, self.dropout, self.training)
        h = torch.cat([x, time.to(x.dtype)], dim=-1)
        for i, lin in enumerate(self.lins):
            h = lin(h)
            if i < len(self.lins) - 1:
                h = torch.tanh(h)
        return h

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.channels}, '
                f'hidden_channels={list(self.hidden_channels)}, '
                f'time_channels={self.time_channels})')
