r"""The recipe of a model with no schedule of its own: a model file plus one
line of :data:`~diffkg_pyg.train.MODELS` is a registered model."""
from typing import Any, Dict, Tuple, Type

import torch
from torch import Tensor

from diffkg_pyg.train.context import TrainContext
from diffkg_pyg.train.recipe import Recipe, Sizes

__all__ = ['BPRRecipe', 'recipe_for']


class BPRRecipe(Recipe):
    r"""Trains a dot-product model on BPR triples: every epoch one negative
    item per train interaction (:meth:`TrainContext.bpr_batches
    <diffkg_pyg.train.TrainContext.bpr_batches>`), each step the model's
    loss on the embeddings of a full forward pass, one
    :class:`torch.optim.Adam`; scores are the inner products of the
    embeddings. :func:`recipe_for` makes one for a model class that has

    * a constructor :obj:`(num_users, num_items, **hyperparameters)`, its
      hyper-parameters declared with
      :func:`~diffkg_pyg.hyperparameters.hyperparameters`;
    * :obj:`forward(edge_index)`: the user and item embeddings
      :obj:`[num_users, d]`, :obj:`[num_items, d]` from the train pairs
      :obj:`[2, num_pairs]` (a model without a graph ignores them);
    * :obj:`loss(user_emb, item_emb, user, pos_item, neg_item,
      **weights)`: the loss of a batch of triples, or the loss and a dict
      of detached terms to log; its declared weights are passed.
    """

    def build_model(self, sizes: Sizes) -> torch.nn.Module:
        return self.model_class(sizes.num_users, sizes.num_items,
                                **self.model_kwargs)

    def setup_inference(self, model: torch.nn.Module,
                        train_edge_index: Tensor) -> None:
        self.train_edge_index = train_edge_index

    def train_epoch(self, model: torch.nn.Module, context: TrainContext,
                    epoch: int) -> Dict[str, Any]:
        weights = self.arguments_of(model.loss)
        for user, pos, neg in context.bpr_batches(f'epoch {epoch}'):
            user_emb, item_emb = model(self.train_edge_index)
            out = model.loss(user_emb, item_emb, user, pos, neg, **weights)
            loss, terms = (out, {}) if isinstance(out, Tensor) else out
            context.step(context.optimizers, loss, **terms)
        return {}

    def embeddings(self, model: torch.nn.Module) -> Tuple[Tensor, Tensor]:
        return model(self.train_edge_index)


def recipe_for(model_class: type, name: str) -> Type[BPRRecipe]:
    r"""The :class:`BPRRecipe` of :obj:`model_class`, registered as
    :obj:`name`: its hyper-parameters are the model's, its description the
    first line of the model's docstring, its configuration for tests the
    model's :obj:`tiny` (if any) with batches of 32."""
    if not callable(getattr(model_class, 'loss', None)):
        raise TypeError(f'{model_class.__name__} (registered as {name!r}) '
                        f'has no loss(user_emb, item_emb, user, pos_item, '
                        f'neg_item, ...): a model class in MODELS needs one '
                        f'(see BPRRecipe), else register its Recipe')
    doc = (model_class.__doc__ or name).strip().split('\n')[0]
    return type(f'{model_class.__name__}Recipe', (BPRRecipe, ), dict(
        name=name, description=doc, model_class=model_class,
        hyperparameters=getattr(model_class, 'hyperparameters', ()),
        tiny=dict(batch_size=32, max_batches=2,
                  **getattr(model_class, 'tiny', {})),
        __module__=model_class.__module__))
