r"""Training: one :class:`Trainer` for every model, each plugged in through
a :class:`Recipe`; checkpoints, saved models and the registry of models."""
from diffkg_pyg.train.hyperparameters import (
    TRAIN_SETTINGS,
    HyperParameter,
    from_signature,
)
from diffkg_pyg.train.persistence import Recommender, load_model, save_model
from diffkg_pyg.train.recipe import Recipe, Sizes
from diffkg_pyg.train.registry import MODELS, get_recipe, register
from diffkg_pyg.train.results import (
    FitResult,
    FitState,
    NonFiniteLossError,
    TrainingInterrupted,
)
from diffkg_pyg.train.sampling import sample_negative_items
from diffkg_pyg.train.trainer import Trainer

__all__ = [
    'HyperParameter',
    'from_signature',
    'TRAIN_SETTINGS',
    'Sizes',
    'Recipe',
    'Trainer',
    'FitResult',
    'FitState',
    'TrainingInterrupted',
    'NonFiniteLossError',
    'sample_negative_items',
    'save_model',
    'load_model',
    'Recommender',
    'MODELS',
    'get_recipe',
    'register',
]
