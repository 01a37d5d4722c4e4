from diffkg_pyg.train.recipes.diffkg import DiffKGRecipe
from diffkg_pyg.train.recipes.lightgcn import LightGCNRecipe

__all__ = ['DiffKGRecipe', 'LightGCNRecipe']
