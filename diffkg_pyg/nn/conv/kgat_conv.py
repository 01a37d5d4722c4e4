r"""KGAT's attentive embedding propagation: one layer over the collaborative
knowledge graph."""
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Linear
from torch_geometric.nn import MessagePassing

__all__ = ['KGATConv', 'AGGREGATORS']

#: KGAT's aggregators (its ``--alg_type`` / ``--aggregation_type``).
AGGREGATORS = ('bi-interaction', 'gcn', 'graphsage')


class KGATConv(MessagePassing):
    r"""One propagation layer of the `"KGAT: Knowledge Graph Attention
    Network for Recommendation" <https://arxiv.org/abs/1905.07854>`_ paper
    (Wang et al., KDD 2019), as its PyTorch port computes it.

    Every node :math:`h` gathers its neighbours in the collaborative
    knowledge graph, weighted by :math:`\pi(h, t)` (the attention, or the
    normalised adjacency), and combines the result with itself:

    .. math::
        \mathbf{e}_{\mathcal{N}_h} &= \sum_{t \in \mathcal{N}_h} \pi(h, t)
        \, \mathbf{e}_t

        \text{bi-interaction:}\quad \mathbf{e}'_h &=
        \mathrm{LeakyReLU}\left(\mathbf{W}_1(\mathbf{e}_h +
        \mathbf{e}_{\mathcal{N}_h})\right) + \mathrm{LeakyReLU}\left(
        \mathbf{W}_2(\mathbf{e}_h \odot \mathbf{e}_{\mathcal{N}_h})\right)

        \text{gcn:}\quad \mathbf{e}'_h &= \mathrm{LeakyReLU}\left(
        \mathbf{W}(\mathbf{e}_h + \mathbf{e}_{\mathcal{N}_h})\right)

        \text{graphsage:}\quad \mathbf{e}'_h &= \mathrm{LeakyReLU}\left(
        \mathbf{W}[\mathbf{e}_h \Vert \mathbf{e}_{\mathcal{N}_h}]\right)

    (the :math:`\mathbf{W}` are :class:`torch.nn.Linear` layers with bias,
    their weights Xavier-initialised; LeakyReLU with slope 0.01).

    Args:
        in_channels (int): Input size.
        out_channels (int): Output size.
        aggregator (str, optional): :obj:`'bi-interaction'`, :obj:`'gcn'` or
            :obj:`'graphsage'`. (default: :obj:`'bi-interaction'`)
        negative_slope (float, optional): LeakyReLU slope.
            (default: :obj:`0.01`)

    Shapes:
        - **input:** node embeddings :math:`(N, F_{in})`, edges
          :math:`(2, E)` (row 0 the nodes that receive, row 1 their
          neighbours), edge weights :math:`(E)`
        - **output:** node embeddings :math:`(N, F_{out})`
    """
    def __init__(self, in_channels: int, out_channels: int,
                 aggregator: str = 'bi-interaction',
                 negative_slope: float = 0.01) -> None:
        super().__init__(aggr='add', flow='target_to_source', node_dim=0)
        if aggregator not in AGGREGATORS:
            raise ValueError(f"'aggregator' must be one of {AGGREGATORS} "
                             f'(got {aggregator!r})')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.aggregator = aggregator
        self.negative_slope = negative_slope
        factor = 2 if aggregator == 'graphsage' else 1
        self.lin1 = Linear(factor * in_channels, out_channels)
        self.lin2 = Linear(in_channels, out_channels) \
            if aggregator == 'bi-interaction' else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for lin in (self.lin1, self.lin2):
            if lin is not None:
                lin.reset_parameters()
                torch.nn.init.xavier_uniform_(lin.weight)

    def forward(self, x: Tensor, edge_index: Tensor,
                edge_weight: Tensor) -> Tensor:
        side = self.propagate(edge_index, x=x, edge_weight=edge_weight,
                              size=(x.size(0), x.size(0)))
        slope = self.negative_slope
        if self.aggregator == 'gcn':
            return F.leaky_relu(self.lin1(x + side), slope)
        if self.aggregator == 'graphsage':
            return F.leaky_relu(self.lin1(torch.cat([x, side], dim=-1)),
                                slope)
        return (F.leaky_relu(self.lin1(x + side), slope) +
                F.leaky_relu(self.lin2(x * side), slope))

    def message(self, x_j: Tensor, edge_weight: Tensor) -> Tensor:
        return edge_weight.unsqueeze(-1) * x_j

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels}, aggregator={self.aggregator!r})')
