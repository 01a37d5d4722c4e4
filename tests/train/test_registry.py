import pytest

from diffkg_pyg.train import MODELS, Recipe, get_recipe, register
from diffkg_pyg.train.recipes import DiffKGRecipe, LightGCNRecipe


def test_registered_models():
    assert get_recipe('diffkg') is DiffKGRecipe
    assert get_recipe('lightgcn') is LightGCNRecipe
    for name in MODELS:
        recipe = get_recipe(name)
        assert recipe.name == name and recipe.description
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        get_recipe('nope')


def test_register():
    class Mine(Recipe):
        name = 'mine-for-test'

    class Clash(Recipe):
        name = 'diffkg'

    try:
        assert register(Mine) is Mine
        assert get_recipe('mine-for-test') is Mine
        register(Mine)  # Twice the same: fine.
    finally:
        MODELS.pop('mine-for-test')
    with pytest.raises(ValueError, match="'diffkg' is registered already"):
        register(Clash)
    with pytest.raises(ValueError, match='has no name'):
        register(Recipe)
