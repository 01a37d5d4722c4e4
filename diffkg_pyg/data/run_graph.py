r"""The graph inputs of one training run, built once on one device."""
from functools import cached_property
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from diffkg_pyg.csr import to_csr
from diffkg_pyg.data.graph import KG, USER_ITEM, bipartite_adjacency

__all__ = ['RunGraph']


class RunGraph:
    r"""What the models of a run derive from a dataset graph, built once
    and on one device: the train pairs, the knowledge graph, and, computed
    on first use and kept, the normalised user-item adjacency
    (:func:`~diffkg_pyg.data.bipartite_adjacency`), the KG's CSR by head
    with its heads, and the train items of every user (the items
    recommendation leaves out).

    The :class:`~diffkg_pyg.train.Trainer` builds one per run
    (:attr:`TrainContext.graph <diffkg_pyg.train.TrainContext.graph>`); a
    PyG loop builds one with :meth:`from_data` from a graph of
    :func:`~diffkg_pyg.data.build_hetero_data` or
    :func:`~diffkg_pyg.data.from_pyg`. Models take it (or the tensors it
    holds) as inputs and hold none of it.

    Args:
        train_edge_index (torch.Tensor): The train pairs :obj:`[2, P]`
            (user, item).
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        kg_edge_index (torch.Tensor, optional): KG pairs :obj:`[2, E]`
            sorted by head, inverses included. (default: none)
        kg_edge_type (torch.Tensor, optional): Their relations :obj:`[E]`.
        num_entities (int, optional): :math:`N` (default: :math:`I`).
    """
    def __init__(self, train_edge_index: Tensor, num_users: int,
                 num_items: int, kg_edge_index: Optional[Tensor] = None,
                 kg_edge_type: Optional[Tensor] = None,
                 num_entities: Optional[int] = None) -> None:
        if (kg_edge_index is None) != (kg_edge_type is None):
            raise ValueError('RunGraph: give kg_edge_index and kg_edge_type '
                             'together')
        self.train_edge_index = train_edge_index
        self.num_users = num_users
        self.num_items = num_items
        self.num_entities = num_items if num_entities is None \
            else num_entities
        self.kg_edge_index = kg_edge_index
        self.kg_edge_type = kg_edge_type
        self._adjacency: Dict[bool, Tensor] = {}

    @classmethod
    def from_data(cls, data: HeteroData,
                  device: Optional[torch.device] = None) -> 'RunGraph':
        r"""The run graph of the train pairs and the knowledge graph of
        :obj:`data` (on :obj:`device`; default: where they are)."""
        kg = data[KG] if KG in data.edge_types else None
        move = (lambda t: t) if device is None else (lambda t: t.to(device))
        return cls(move(data[USER_ITEM].edge_index), data['user'].num_nodes,
                   data['item'].num_nodes,
                   None if kg is None else move(kg.edge_index),
                   None if kg is None else move(kg.edge_type),
                   data['entity'].num_nodes if kg is not None else None)

    @property
    def device(self) -> torch.device:
        return self.train_edge_index.device

    @property
    def kg(self) -> Tuple[Tensor, Tensor]:
        r"""The knowledge graph :obj:`(edge_index, edge_type)`."""
        if self.kg_edge_index is None:
            raise ValueError('this run graph has no knowledge graph')
        return self.kg_edge_index, self.kg_edge_type

    def adjacency(self, add_self_loops: bool = False) -> Tensor:
        r"""The normalised user-item adjacency of the train pairs (users
        first, then items; a symmetric sparse CSR tensor), built once per
        choice of :obj:`add_self_loops`."""
        if add_self_loops not in self._adjacency:
            self._adjacency[add_self_loops] = bipartite_adjacency(
                self.train_edge_index, self.num_users, self.num_items,
                add_self_loops=add_self_loops)
        return self._adjacency[add_self_loops]

    @cached_property
    def kg_csr(self) -> Tuple[Tensor, Tensor]:
        r"""The KG's row pointer :obj:`[N + 1]` and tails, by head."""
        return to_csr(self.kg[0], self.num_entities)

    @cached_property
    def kg_heads(self) -> Tensor:
        r"""The heads that have KG edges, ascending."""
        ptr = self.kg_csr[0]
        return torch.nonzero(ptr[1:] > ptr[:-1]).view(-1)

    @cached_property
    def train_csr(self) -> Tuple[Tensor, Tensor]:
        r"""Every user's train items as a CSR :obj:`(ptr, col)`."""
        return to_csr(self.train_edge_index, self.num_users)

    def to(self, device: torch.device) -> 'RunGraph':
        r"""This graph on :obj:`device` (itself when it is there)."""
        if torch.device(device) == self.device:
            return self
        kg = (None, None) if self.kg_edge_index is None else \
            tuple(t.to(device) for t in self.kg)
        return RunGraph(self.train_edge_index.to(device), self.num_users,
                        self.num_items, *kg, self.num_entities)

    def __repr__(self) -> str:
        edges = 0 if self.kg_edge_index is None else \
            self.kg_edge_index.size(1)
        return (f'{self.__class__.__name__}(num_users={self.num_users}, '
                f'num_items={self.num_items}, '
                f'num_train={self.train_edge_index.size(1)}, '
                f'kg_edges={edges}, device={self.device})')
