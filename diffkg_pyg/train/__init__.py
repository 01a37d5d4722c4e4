r"""Training: one :class:`Trainer` for every model, each plugged in through
a :class:`Recipe` that sees the run through a :class:`TrainContext`;
checkpoints (:class:`Checkpointer`), saved models, the registry of models
and hyper-parameter search (:func:`tune`, with Optuna)."""
from diffkg_pyg.hyperparameters import (
    HyperParameter,
    Range,
    Space,
    from_signature,
)
from diffkg_pyg.train.accounting import StepAccounting
from diffkg_pyg.train.bpr_recipe import BPRRecipe, recipe_for
from diffkg_pyg.train.checkpointer import Checkpointer
from diffkg_pyg.train.context import TrainContext
from diffkg_pyg.train.hyperparameters import TRAIN_SETTINGS
from diffkg_pyg.train.outputs import (
    evaluate_saved,
    read_users,
    write_embeddings,
    write_top_k,
)
from diffkg_pyg.train.persistence import Recommender, load_model, save_model
from diffkg_pyg.train.recipe import Recipe, Sizes
from diffkg_pyg.train.registry import MODELS, get_recipe, register
from diffkg_pyg.train.results import (
    DivergenceError,
    FitResult,
    FitState,
    NonFiniteLossError,
    TrainingInterrupted,
)
from diffkg_pyg.train.sampling import interaction_keys, sample_negative_items
from diffkg_pyg.train.trainer import Trainer
from diffkg_pyg.train.tuning import TuneResult, tune

__all__ = [
    'HyperParameter',
    'Range',
    'Space',
    'from_signature',
    'TRAIN_SETTINGS',
    'Sizes',
    'Recipe',
    'BPRRecipe',
    'recipe_for',
    'TrainContext',
    'StepAccounting',
    'Trainer',
    'Checkpointer',
    'FitResult',
    'FitState',
    'TrainingInterrupted',
    'NonFiniteLossError',
    'DivergenceError',
    'interaction_keys',
    'sample_negative_items',
    'save_model',
    'load_model',
    'Recommender',
    'read_users',
    'write_top_k',
    'write_embeddings',
    'evaluate_saved',
    'MODELS',
    'get_recipe',
    'register',
    'tune',
    'TuneResult',
]
