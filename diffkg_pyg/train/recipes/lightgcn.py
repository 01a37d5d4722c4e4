r"""The training recipe of PyG's
:class:`~torch_geometric.nn.models.LightGCN`, the baseline."""
from typing import Any, Dict, Tuple

import torch
from torch import Tensor
from torch_geometric.nn.models import LightGCN

from diffkg_pyg.data.graph import bipartite_adjacency
from diffkg_pyg.hyperparameters import HyperParameter, Space
from diffkg_pyg.train.context import TrainContext
from diffkg_pyg.train.recipe import Recipe, Sizes

__all__ = ['LightGCNRecipe']


class LightGCNRecipe(Recipe):
    r"""Trains :class:`torch_geometric.nn.models.LightGCN` (`"LightGCN:
    Simplifying and Powering Graph Convolution Network for Recommendation"
    <https://arxiv.org/abs/2002.02126>`_) with the BPR loss on the train
    interactions, over the symmetrically normalised user-item adjacency.

    Every epoch draws one negative item per train interaction; each step's
    loss is PyG's :meth:`~torch_geometric.nn.models.LightGCN.
    recommendation_loss`: BPR plus :obj:`l2_weight` times the squared norm
    of the batch's layer-0 embeddings, divided by the batch size. Scores
    are dot products of the final embeddings (the mean of the layer
    outputs).
    """
    name = 'lightgcn'
    description = ('LightGCN (He et al., SIGIR 2020), PyG\'s model: the '
                   'baseline without a knowledge graph')
    tiny = dict(embedding_dim=8, batch_size=32, max_batches=2)
    hyperparameters = (
        HyperParameter('embedding_dim', int, 'embedding size', 64,
                       aliases=('latdim', ), range='[1, inf)'),
        HyperParameter('num_layers', int, 'propagation layers', 2,
                       aliases=('gnn_layer', ), range='[1, inf)',
                       space=Space(1, 4)),
        HyperParameter('l2_weight', float, 'L2 weight on the batch '
                       "embeddings (PyG's lambda_reg)", 1e-4,
                       aliases=('reg', 'lambda_reg'), range='[0, inf)',
                       space=Space(1e-6, 1e-2, log=True)),
    )

    def build_model(self, sizes: Sizes) -> LightGCN:
        self.num_users = sizes.num_users
        self.num_items = sizes.num_items
        return LightGCN(sizes.num_users + sizes.num_items,
                        self.hparams['embedding_dim'],
                        self.hparams['num_layers'], normalize=False)

    def setup_inference(self, model: LightGCN,
                        train_edge_index: Tensor) -> None:
        self.adj = bipartite_adjacency(train_edge_index, self.num_users,
                                       self.num_items)

    def train_epoch(self, model: LightGCN, context: TrainContext,
                    epoch: int) -> Dict[str, Any]:
        offset = self.num_users
        for user, pos, neg in context.bpr_batches(f'epoch {epoch}'):
            out = model.get_embedding(self.adj)
            pos_rank = (out[user] * out[pos + offset]).sum(dim=-1)
            neg_rank = (out[user] * out[neg + offset]).sum(dim=-1)
            node_id = torch.cat([user, pos + offset, neg + offset])
            loss = model.recommendation_loss(
                pos_rank, neg_rank, node_id=node_id,
                lambda_reg=self.hparams['l2_weight'])
            context.step(context.optimizers, loss)
        return {}

    def embeddings(self, model: LightGCN) -> Tuple[Tensor, Tensor]:
        out = model.get_embedding(self.adj)
        return out[:self.num_users], out[self.num_users:]
