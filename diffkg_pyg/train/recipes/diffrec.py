r"""The training recipes of :class:`~diffkg_pyg.DiffRec`,
:class:`~diffkg_pyg.TDiffRec` and :class:`~diffkg_pyg.LDiffRec`."""
from typing import Any, Callable, Dict, Iterator, List

import torch
from torch import Tensor

from diffkg_pyg.csr import to_csr
from diffkg_pyg.data.graph import USER_ITEM
from diffkg_pyg.hyperparameters import HyperParameter, Space
from diffkg_pyg.nn.models.diffrec import DiffRec, TDiffRec, interaction_rows
from diffkg_pyg.nn.models.ldiffrec import LDiffRec, LTDiffRec, kmeans
from diffkg_pyg.train.context import TrainContext
from diffkg_pyg.train.recipe import Recipe, Sizes
from diffkg_pyg.train.recipes.lightgcn import LightGCNRecipe
from diffkg_pyg.train.trainer import Trainer

__all__ = ['DiffRecRecipe', 'TDiffRecRecipe', 'LDiffRecRecipe',
           'LTDiffRecRecipe', 'item_clusters', 'DIFFREC_PRESETS',
           'TDIFFREC_PRESETS', 'LDIFFREC_PRESETS', 'LTDIFFREC_PRESETS']

#: The authors' settings per dataset (their ``inference.py`` and the names
#: of their released checkpoints), with the training settings of their
#: ``main.py``: AdamW, up to 1,000 epochs, validation every 5 epochs,
#: stopping 20 epochs after the best one (``epoch - best_epoch >= 20``
#: before each epoch; with validation every 5 epochs the last validated
#: epoch is then the best plus 15, which is what :obj:`patience` 15 does
#: here, checked after each epoch: the same validated epochs and the same
#: selected model). Their ``--reweight`` was parsed with ``type=bool``, so
#: every released run, ``--reweight 0`` included, reweighted: so do these.
DIFFREC_PRESETS = {
    'ml-1m': dict(hidden_channels=(200, 600), time_channels=10,
                  mean_type='x0', diffusion_steps=40, noise_scale=0.005,
                  noise_min=0.005, noise_max=0.01, sampling_steps=0,
                  reweight=True, lr=1e-3, weight_decay=0.0, batch_size=400,
                  epochs=1000, eval_every=5, patience=15),
    'amazon-book': dict(hidden_channels=(1000, ), time_channels=10,
                        mean_type='x0', diffusion_steps=5, noise_scale=1e-4,
                        noise_min=5e-4, noise_max=5e-3, sampling_steps=0,
                        reweight=True, lr=5e-5, weight_decay=0.0,
                        batch_size=400, epochs=1000, eval_every=5,
                        patience=15),
    'yelp': dict(hidden_channels=(1000, ), time_channels=10, mean_type='x0',
                 diffusion_steps=5, noise_scale=0.01, noise_min=0.001,
                 noise_max=0.01, sampling_steps=0, reweight=True, lr=1e-5,
                 weight_decay=0.0, batch_size=400, epochs=1000,
                 eval_every=5, patience=15),
}
# The noisy settings (their noisy datasets, names of the released
# checkpoints), on the clean ones' protocol:
DIFFREC_PRESETS.update({
    'ml-1m-noisy': {**DIFFREC_PRESETS['ml-1m'], 'diffusion_steps': 5,
                    'noise_scale': 0.5, 'noise_min': 1e-3,
                    'noise_max': 1e-2},
    'amazon-book-noisy': {**DIFFREC_PRESETS['amazon-book'],
                          'diffusion_steps': 10, 'noise_scale': 5e-3,
                          'noise_min': 1e-4, 'noise_max': 5e-4},
    'yelp-noisy': {**DIFFREC_PRESETS['yelp'], 'noise_scale': 1e-3,
                   'noise_min': 5e-4, 'noise_max': 1e-2},
})

#: The authors' released T-DiffRec settings (amazon-book, yelp): DiffRec's
#: presets with T-DiffRec's own learning rate, steps, noise and weights.
#: They released no ML-1M T-DiffRec run: its preset is DiffRec's with the
#: default weights (w_min 0.1, w_max 1.0).
TDIFFREC_PRESETS = {
    'ml-1m': dict(DIFFREC_PRESETS['ml-1m']),
    'amazon-book': {**DIFFREC_PRESETS['amazon-book'], 'lr': 1e-5,
                    'diffusion_steps': 10, 'noise_scale': 5e-4,
                    'noise_min': 1e-3, 'noise_max': 5e-3, 'w_min': 0.1,
                    'w_max': 1.0},
    'yelp': {**DIFFREC_PRESETS['yelp'], 'lr': 1e-5, 'diffusion_steps': 5,
             'noise_scale': 5e-3, 'noise_min': 1e-3, 'noise_max': 1e-2,
             'w_min': 0.5, 'w_max': 1.0},
}

#: The authors' L-DiffRec settings (their ``inference.py`` and the names of
#: their released checkpoints: ``lr1`` of the autoencoder, ``lr2`` of the
#: denoiser, ``n_cate 2``, ``in [300]``, ``out []``, ``dims [300]``), with
#: the training protocol of :data:`DIFFREC_PRESETS`.
LDIFFREC_PRESETS = {
    'ml-1m': dict(num_clusters=2, latent_channels=300,
                  hidden_channels=(300, ), lamda=0.03, mean_type='x0',
                  diffusion_steps=40, noise_scale=0.005, noise_min=0.005,
                  noise_max=0.02, sampling_steps=0, reweight=True,
                  autoencoder_lr=1e-3, lr=5e-4, weight_decay=0.0,
                  batch_size=400, epochs=1000, eval_every=5, patience=15),
}
# The other released runs (the names of their checkpoints, which their
# inference.py contradicts once: it sets 10 steps for amazon-book-noisy,
# the checkpoint says 5):
LDIFFREC_PRESETS.update({
    'amazon-book': {**LDIFFREC_PRESETS['ml-1m'], 'lamda': 0.05,
                    'diffusion_steps': 5, 'noise_scale': 0.5,
                    'noise_min': 1e-3, 'noise_max': 5e-3,
                    'autoencoder_lr': 5e-4, 'lr': 1e-4},
    'yelp': {**LDIFFREC_PRESETS['ml-1m'], 'diffusion_steps': 5,
             'noise_scale': 0.01, 'noise_min': 5e-3, 'noise_max': 1e-2,
             'autoencoder_lr': 5e-4, 'lr': 1e-4},
    'ml-1m-noisy': {**LDIFFREC_PRESETS['ml-1m'], 'diffusion_steps': 100},
    'amazon-book-noisy': {**LDIFFREC_PRESETS['ml-1m'], 'lamda': 0.07,
                          'diffusion_steps': 5, 'noise_scale': 0.5,
                          'noise_min': 1e-3, 'noise_max': 5e-3,
                          'autoencoder_lr': 5e-4, 'lr': 1e-4},
    'yelp-noisy': {**LDIFFREC_PRESETS['ml-1m'], 'diffusion_steps': 5,
                   'noise_scale': 0.01, 'noise_min': 5e-3,
                   'noise_max': 1e-2, 'autoencoder_lr': 5e-4, 'lr': 1e-4},
})

# What the authors' two released LT-DiffRec runs share:
_LT_PROTOCOL = dict(num_clusters=2, latent_channels=300,
                    hidden_channels=(300, ), lamda=0.03, mean_type='x0',
                    diffusion_steps=5, sampling_steps=0, reweight=True,
                    autoencoder_lr=5e-4, weight_decay=0.0,
                    autoencoder_weight_decay=0.0, epochs=1000,
                    eval_every=5, patience=15)
#: The authors' released LT-DiffRec settings (amazon-book and yelp, their
#: ``inference.py`` and checkpoint names). They released no ML-1M run:
#: its preset is L-DiffRec's ML-1M one with the default weights (w_min 0.1,
#: w_max 1.0), as T-DiffRec's is DiffRec's.
LTDIFFREC_PRESETS = {
    'ml-1m': {**LDIFFREC_PRESETS['ml-1m'], 'w_min': 0.1, 'w_max': 1.0},
    'amazon-book': {**_LT_PROTOCOL, 'noise_scale': 0.7, 'noise_min': 1e-3,
                    'noise_max': 5e-3, 'w_min': 0.1, 'w_max': 1.0,
                    'lr': 1e-4, 'batch_size': 400},
    'yelp': {**_LT_PROTOCOL, 'noise_scale': 0.01, 'noise_min': 5e-3,
             'noise_max': 1e-2, 'w_min': 0.5, 'w_max': 1.0, 'lr': 5e-5,
             'batch_size': 200},
}

class DiffRecRecipe(Recipe):
    r"""Trains :class:`~diffkg_pyg.DiffRec` as its authors' ``main.py``
    does: every epoch is one pass over all users in random order,
    :obj:`batch_size` users per step, each step on :meth:`DiffRec.loss` of
    the users' train rows, with :class:`torch.optim.AdamW` (the learning
    rate and weight decay of the training settings). Evaluation scores a
    user by :meth:`DiffRec.recommend` of their train row (a generator
    seeded with the run's seed per evaluation draws any inference noise,
    so that validation does not move the training's random stream).

    The model needs only the user-item interactions: it trains on DiffRec's
    datasets and on the user-item part of the knowledge-graph datasets.
    """
    name = 'diffrec'
    description = ('DiffRec: diffusion over interaction rows (Wang et al., '
                   'SIGIR 2023)')
    model_class = DiffRec
    presets = DIFFREC_PRESETS
    # The authors' learning rates (1e-5 to 1e-3 across their datasets):
    setting_spaces = {'lr': Space(1e-5, 1e-3, log=True)}
    tiny = dict(hidden_channels=(8, 12), diffusion_steps=4, batch_size=16,
                max_batches=2)

    def build_model(self, sizes: Sizes) -> DiffRec:
        self.num_users = sizes.num_users
        self.seed = 0  # Of inference noise; the run's seed in training.
        return self.model_class(sizes.num_items, **self.hparams)

    def setup(self, model: DiffRec, context: TrainContext, data) -> None:
        self.seed = context.seed
        self.setup_inference(model, context.train_edge_index)

    def setup_inference(self, model: DiffRec,
                        train_edge_index: Tensor) -> None:
        self.ptr, self.col = to_csr(train_edge_index, self.num_users)
        self.weight = model.input_weights(self.ptr)

    def configure_optimizers(self, model: DiffRec, context: TrainContext
                             ) -> List[torch.optim.Optimizer]:
        return [torch.optim.AdamW(model.parameters(), lr=context.lr,
                                  weight_decay=context.weight_decay)]

    def epoch_rows(self, model: DiffRec, context: TrainContext,
                   epoch: int) -> Iterator[Tensor]:
        r"""One pass over all users in random order: the input rows of
        each batch of :obj:`batch_size` users."""
        perm = torch.randperm(self.num_users, generator=context.generator,
                              device=context.device)
        for users in context.progress(context.batches(perm),
                                      f'epoch {epoch}'):
            yield interaction_rows(self.ptr, self.col, users,
                                   model.num_items, self.weight)

    def train_epoch(self, model: DiffRec, context: TrainContext,
                    epoch: int) -> Dict[str, Any]:
        for x in self.epoch_rows(model, context, epoch):
            loss, mse = model.loss(x, context.generator)
            context.step(context.optimizers, loss, mse=mse)
        return {}

    def scores(self, model: DiffRec) -> Callable[[Tensor], Tensor]:
        device = self.col.device
        generator = torch.Generator(device).manual_seed(self.seed)
        return lambda users: model.recommend(
            interaction_rows(self.ptr, self.col, users.to(device),
                             model.num_items, self.weight), generator)


def require_chronology(name: str, data) -> None:
    r"""Raises unless :obj:`data` holds the chronological order of the
    train interactions (``edge_time``), which T-DiffRec's weights need."""
    if 'edge_time' not in data[USER_ITEM]:
        raise ValueError(f'{name} needs the chronological order of the '
                         f'train interactions, which datasets in '
                         f"DiffRec's layout (train_list.npy) have, and "
                         f'RecBole or CSV files with a timestamp column')


class TDiffRecRecipe(DiffRecRecipe):
    r"""Trains :class:`~diffkg_pyg.TDiffRec` as :class:`DiffRecRecipe`
    trains DiffRec. It needs the chronological order of every user's train
    interactions (``edge_time``, in DiffRec's dataset layout)."""
    name = 'tdiffrec'
    description = ('T-DiffRec: DiffRec with time-aware interaction weights '
                   '(Wang et al., SIGIR 2023)')
    model_class = TDiffRec
    presets = TDIFFREC_PRESETS

    def setup(self, model: TDiffRec, context: TrainContext, data) -> None:
        require_chronology(self.name, data)
        super().setup(model, context, data)


#: What L-DiffRec's recipe adds to its model's declarations: the
#: clustering and the autoencoder's optimiser.
_LDIFFREC_SETTINGS = (
    HyperParameter('num_clusters', int, 'item clusters (k-means)', 2,
                   aliases=('n_cate', )),
    HyperParameter('embedding_epochs', int, 'epochs of the LightGCN '
                   'whose item embeddings are clustered, for datasets '
                   'without item_emb.npy', 100),
    HyperParameter('autoencoder_lr', float, "the autoencoder's learning "
                   'rate (default: the training lr)', None,
                   aliases=('lr1', )),
    HyperParameter('autoencoder_weight_decay', float, "the "
                   "autoencoder's weight decay (default: the training "
                   'weight decay)', None, aliases=('wd1', )),
    HyperParameter('decoder_hidden_channels', tuple, 'hidden sizes of '
                   "the decoder (the authors' out_dims; only their "
                   'released one-layer decoder, [], is supported)', (),
                   aliases=('out_dims', ), choices=((), )),
)


def item_clusters(data, num_clusters: int, seed: int,
                  embedding_epochs: int = 100) -> Tensor:
    r"""L-DiffRec's clustering of the items, a data step before training:
    k-means (:func:`~diffkg_pyg.nn.models.ldiffrec.kmeans`, seeded by
    :obj:`seed`) on the dataset's item embeddings (``data['item'].x``:
    ``item_emb.npy`` in DiffRec's layout, the authors' pretrained LightGCN
    embeddings) or, where it has none, on the item embeddings of a LightGCN
    trained on the train interactions (:obj:`embedding_epochs` epochs,
    early stopping on validation). Returns the cluster of every item
    :obj:`[num_items]`; set it as ``data['item'].ldiffrec_cluster`` and
    :class:`LDiffRecRecipe` uses it, else the recipe computes it so.
    """
    item = data['item']
    if 'x' in item:
        embeddings = item.x
    else:
        recipe = LightGCNRecipe()
        trainer = Trainer(recipe, data, seed=seed, log=lambda line: None)
        trainer.fit(embedding_epochs, patience=10)
        trainer.model.eval()
        with torch.no_grad():
            out = trainer.model.get_embedding(recipe.adj)
        embeddings = out[recipe.num_users:].detach()
    generator = torch.Generator().manual_seed(seed)
    return kmeans(embeddings.cpu(), num_clusters, generator)


class LDiffRecRecipe(DiffRecRecipe):
    r"""Trains :class:`~diffkg_pyg.LDiffRec` as its authors' ``main.py``
    does: the items are clustered (``data['item'].ldiffrec_cluster``, set
    by the data step :func:`item_clusters`, or else computed by it here
    with the run's seed); then every epoch is one pass over all users in random
    order, with one :class:`torch.optim.AdamW` for the autoencoder
    (:obj:`autoencoder_lr`, :obj:`autoencoder_weight_decay`) and one for
    the denoiser (the training learning rate and weight decay).
    """
    name = 'ldiffrec'
    description = ('L-DiffRec: DiffRec in the latent space of clustered '
                   'autoencoders (Wang et al., SIGIR 2023)')
    model_class = LDiffRec
    presets = LDIFFREC_PRESETS
    # The authors' names of the denoiser's learning rate and weight decay
    # (lr1 and wd1 are the autoencoder's, below):
    setting_aliases = {'lr': ('lr2', ), 'weight_decay': ('wd2', )}
    tiny = dict(num_clusters=2, embedding_epochs=2, latent_channels=8,
                hidden_channels=(8, ), diffusion_steps=4, batch_size=16,
                max_batches=2)
    hyperparameters = _LDIFFREC_SETTINGS + LDiffRec.hyperparameters

    def prepare(self, data, context: TrainContext) -> None:
        item, k = data['item'], self.hparams['num_clusters']
        if 'ldiffrec_cluster' in item:  # Clustered by a data step before.
            cluster = torch.as_tensor(item.ldiffrec_cluster,
                                      dtype=torch.long)
            if cluster.shape != (item.num_nodes, ) or \
                    torch.unique(cluster).tolist() != list(range(k)):
                raise ValueError(f"data['item'].ldiffrec_cluster must give "
                                 f'each of the {item.num_nodes} items one '
                                 f'of the {k} clusters (num_clusters), '
                                 f'every cluster used (see item_clusters)')
            self.cluster = cluster.cpu()
        else:
            self.cluster = item_clusters(data, k, context.seed,
                                         self.hparams['embedding_epochs'])

    def state_dict(self) -> Dict[str, Any]:
        return {'cluster': self.cluster}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.cluster = state['cluster'].cpu()

    def build_model(self, sizes: Sizes) -> LDiffRec:
        self.num_users = sizes.num_users
        self.seed = 0
        skip = {p.name for p in _LDIFFREC_SETTINGS}
        return self.model_class(sizes.num_items, self.cluster,
                                **{k: v for k, v in self.hparams.items()
                                   if k not in skip})

    def configure_optimizers(self, model: LDiffRec, context: TrainContext
                             ) -> List[torch.optim.Optimizer]:
        lr = self.hparams['autoencoder_lr']
        decay = self.hparams['autoencoder_weight_decay']
        return [
            torch.optim.AdamW(model.autoencoder_parameters(),
                              lr=context.lr if lr is None else lr,
                              weight_decay=context.weight_decay
                              if decay is None else decay),
            torch.optim.AdamW(model.denoiser_parameters(), lr=context.lr,
                              weight_decay=context.weight_decay),
        ]

    def train_epoch(self, model: LDiffRec, context: TrainContext,
                    epoch: int) -> Dict[str, Any]:
        for x in self.epoch_rows(model, context, epoch):
            loss, diffusion, recon, kl = model.loss(x, epoch,
                                                    context.generator)
            context.step(context.optimizers, loss, diffusion=diffusion,
                         recon=recon, kl=kl)
        return {}


class LTDiffRecRecipe(LDiffRecRecipe):
    r"""Trains :class:`~diffkg_pyg.nn.models.LTDiffRec` as
    :class:`LDiffRecRecipe` trains L-DiffRec, on rows weighted in
    chronological order (``edge_time``, DiffRec's layout)."""
    name = 'ltdiffrec'
    description = ('LT-DiffRec: L-DiffRec with time-aware interaction '
                   'weights (Wang et al., SIGIR 2023)')
    model_class = LTDiffRec
    presets = LTDIFFREC_PRESETS
    hyperparameters = _LDIFFREC_SETTINGS + LTDiffRec.hyperparameters

    def setup(self, model: LTDiffRec, context: TrainContext, data) -> None:
        require_chronology(self.name, data)
        super().setup(model, context, data)
