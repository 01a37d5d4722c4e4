r"""The training recipe of :class:`~diffkg_pyg.nn.models.MF`."""
from typing import Any, Dict, Tuple

from torch import Tensor

from diffkg_pyg.nn.models.mf import MF
from diffkg_pyg.train.context import TrainContext
from diffkg_pyg.train.recipe import Recipe, Sizes

__all__ = ['MFRecipe']


class MFRecipe(Recipe):
    r"""Trains :class:`~diffkg_pyg.nn.models.MF` with the BPR loss: every
    epoch one negative item per train interaction, each step
    :meth:`MF.loss <diffkg_pyg.nn.models.MF.loss>`, one
    :class:`torch.optim.Adam`; scores are the dot products."""
    name = 'mf'
    description = ('MF: matrix factorisation with BPR (Rendle et al., UAI '
                   '2009), the papers\' MF row')
    tiny = dict(embedding_dim=8, batch_size=32, max_batches=2)
    model_class = MF

    def build_model(self, sizes: Sizes) -> MF:
        return MF(sizes.num_users, sizes.num_items, **self.model_kwargs)

    def train_epoch(self, model: MF, context: TrainContext,
                    epoch: int) -> Dict[str, Any]:
        for user, pos, neg in context.bpr_batches(f'epoch {epoch}'):
            loss, bpr = model.loss(user, pos, neg, self.hparams['l2_weight'])
            context.step(context.optimizers, loss, bpr=bpr)
        return {}

    def embeddings(self, model: MF) -> Tuple[Tensor, Tensor]:
        return model.user_emb, model.item_emb
