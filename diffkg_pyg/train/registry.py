r"""The models the command line and :func:`load_model` know by name.

A new model adds one line to :data:`MODELS`: its name and where its
:class:`~diffkg_pyg.train.Recipe` lives (imported only when used), or,
for a model with no schedule of its own, where the model class lives (it
is then trained by :class:`~diffkg_pyg.train.bpr_recipe.BPRRecipe`).
"""
import importlib
from typing import Dict, Type

import torch

from diffkg_pyg.train.bpr_recipe import recipe_for
from diffkg_pyg.train.recipe import Recipe

__all__ = ['MODELS', 'get_recipe', 'register']

#: Registered models: name -> 'module:RecipeClass' (or 'module:ModelClass'
#: for a model :class:`~diffkg_pyg.train.bpr_recipe.BPRRecipe` trains).
MODELS: Dict[str, str] = {
    'diffkg': 'diffkg_pyg.train.recipes.diffkg:DiffKGRecipe',
    'lightgcn': 'diffkg_pyg.train.recipes.lightgcn:LightGCNRecipe',
    'diffrec': 'diffkg_pyg.train.recipes.diffrec:DiffRecRecipe',
    'tdiffrec': 'diffkg_pyg.train.recipes.diffrec:TDiffRecRecipe',
    'ldiffrec': 'diffkg_pyg.train.recipes.diffrec:LDiffRecRecipe',
    'ltdiffrec': 'diffkg_pyg.train.recipes.diffrec:LTDiffRecRecipe',
    'mf': 'diffkg_pyg.train.recipes.mf:MFRecipe',
    'kgin': 'diffkg_pyg.train.recipes.kgin:KGINRecipe',
    'kgat': 'diffkg_pyg.train.recipes.kgat:KGATRecipe',
    'kgcl': 'diffkg_pyg.train.recipes.kgcl:KGCLRecipe',
}

_LOADED: Dict[str, Type[Recipe]] = {}


def get_recipe(name: str) -> Type[Recipe]:
    r"""The recipe class of the registered model :obj:`name` (raises
    :class:`KeyError` naming the registered ones otherwise)."""
    if name not in MODELS:
        raise KeyError(f'unknown model {name!r} (registered: '
                       f'{", ".join(sorted(MODELS))})')
    if name not in _LOADED:
        module, attribute = MODELS[name].split(':')
        found = getattr(importlib.import_module(module), attribute)
        if isinstance(found, type) and issubclass(found, torch.nn.Module):
            found = recipe_for(found, name)
        _LOADED[name] = found
    return _LOADED[name]


def register(recipe: Type[Recipe]) -> Type[Recipe]:
    r"""Registers a recipe class under its :obj:`name` for this process
    (usable as a class decorator), so that :func:`get_recipe` and
    :func:`~diffkg_pyg.train.load_model` find it."""
    if not isinstance(recipe, type) or not issubclass(recipe, Recipe):
        raise TypeError(f'register takes a Recipe class (got {recipe!r}; '
                        f"a model class is registered by a line of MODELS: "
                        f"MODELS['name'] = 'module:Model')")
    if not recipe.name:
        raise ValueError(f'{recipe.__name__} has no name')
    if recipe.name in MODELS and get_recipe(recipe.name) is not recipe:
        raise ValueError(f'a model named {recipe.name!r} is registered '
                         f'already')
    MODELS[recipe.name] = f'{recipe.__module__}:{recipe.__qualname__}'
    _LOADED[recipe.name] = recipe
    return recipe
