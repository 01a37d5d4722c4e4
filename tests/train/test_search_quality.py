r"""The tuner searches: on a recipe whose validation Recall@20 is a known
smooth function of 4 hyper-parameters with a planted optimum (plus seeded
noise), TPE comes within a stated distance of the optimum more often than
random search with the same trials, over several seeds. This test is what
keeps the tuner honest when it is changed."""
import math
import warnings

import pytest
import torch

from diffkg_pyg.data import USER_ITEM
from diffkg_pyg.train import HyperParameter, Recipe, Space
from diffkg_pyg.train.tuning import tune
from tests.train.test_trainer import small_data

optuna = pytest.importorskip('optuna')

PLANTED = {'a': 0.3, 'b': 0.7, 'c': 0.2, 'd': 0.6}
#: How near the planted optimum a search's winner must come.
RADIUS = 0.2
SEEDS = range(5)
TRIALS = 30
#: Everything but the 4 searched hyper-parameters is fixed.
SETTINGS = dict(epochs=1, patience=1, batch_size=64, max_batches=1,
                lr=1e-3)


def quality(hparams) -> float:
    r"""1 at the planted optimum, a Gaussian bump around it."""
    distance = sum((hparams[k] - v) ** 2 for k, v in PLANTED.items())
    return math.exp(-distance / (2 * 0.2 ** 2))


class PlantedRecipe(Recipe):
    r"""Scores every user's validation items above noise by an amount that
    grows with :func:`quality`, so that validation Recall@20 does."""
    name = 'planted-for-test'
    description = 'a planted optimum for the search-quality test'
    hyperparameters = tuple(
        HyperParameter(name, float, name, 0.5, range='[0, 1]',
                       space=Space(0.0, 1.0)) for name in PLANTED)

    def build_model(self, sizes):
        self.sizes = sizes
        return torch.nn.Linear(1, 1)

    def setup(self, model, context, data):
        val = data[USER_ITEM].val_edge_index
        self.is_val = torch.zeros(self.sizes.num_users, self.sizes.num_items)
        self.is_val[val[0], val[1]] = 1.0

    def train_epoch(self, model, context, epoch):
        context.step(context.optimizers, model.weight.sum() * 0.0)
        return {}

    def scores(self, model):
        key = hash(tuple(round(v, 12) for v in self.hparams.values()))
        gen = torch.Generator().manual_seed(key % 2**31)
        signal = quality(self.hparams) + 0.02 * float(torch.randn(
            (), generator=gen))  # The seeded noise of a training run.
        noise = torch.randn(self.is_val.shape,
                            generator=torch.Generator().manual_seed(0))
        return lambda users: 3.0 * signal * self.is_val[users] + \
            noise[users]


def winners_near_the_optimum(sampler: str, tmp_path) -> int:
    data = small_data()
    near = 0
    for seed in SEEDS:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            result = tune(data, PlantedRecipe, TRIALS,
                          str(tmp_path / f'{sampler}-{seed}'),
                          sampler=sampler, pruner='none', confirm_top=0,
                          settings={**SETTINGS, 'seed': seed},
                          log=lambda line: None)
        distance = math.dist([result.best_params[k] for k in PLANTED],
                             list(PLANTED.values()))
        near += distance < RADIUS
    return near


def test_quality_has_its_planted_optimum():
    assert quality(PLANTED) == 1.0
    assert quality({k: 1 - v for k, v in PLANTED.items()}) < 0.01


@pytest.mark.slow  # 300 short trials.
def test_tpe_finds_the_optimum_more_often_than_random_search(tmp_path):
    tpe = winners_near_the_optimum('tpe', tmp_path)
    random = winners_near_the_optimum('random', tmp_path)
    print(f'winners within {RADIUS} of the optimum in {len(SEEDS)} '
          f'studies of {TRIALS} trials: tpe {tpe}, random {random}')
    assert tpe > random
