import inspect

import pytest

from diffkg_pyg import PRESETS, DiffKG
from diffkg_pyg.train import (
    TRAIN_SETTINGS,
    HyperParameter,
    Trainer,
    from_signature,
    get_recipe,
)
from diffkg_pyg.train.hyperparameters import resolve

SIZES = {'num_users', 'num_items', 'num_entities', 'num_relations'}


def test_diffkg_declares_every_constructor_argument():
    recipe = get_recipe('diffkg')
    signature = inspect.signature(DiffKG).parameters
    declared = {p.name: p.default for p in recipe.hyperparameters}
    expected = {name: p.default for name, p in signature.items()
                if name not in SIZES}
    assert {k: declared[k] for k in expected} == expected
    assert set(declared) - set(expected) == {'diffusion'}  # The recipe's.
    assert recipe.presets is PRESETS
    for preset in PRESETS.values():
        assert set(preset) <= set(declared)


def test_settings_are_trainer_arguments():
    signature = inspect.signature(Trainer).parameters
    for setting in TRAIN_SETTINGS:
        if setting.name not in ('epochs', 'patience'):  # fit()'s.
            assert signature[setting.name].default == setting.default


def test_from_signature_errors():
    def model(a, b=2):
        pass
    assert from_signature(model, HyperParameter('b', int, ''))[0].default \
        == 2
    with pytest.raises(TypeError, match="'c' is not an argument"):
        from_signature(model, HyperParameter('c', int, ''))
    with pytest.raises(TypeError, match="'a' has no default"):
        from_signature(model, HyperParameter('a', int, ''))


PARAMETERS = (
    HyperParameter('rate', float, '', 0.5, aliases=('keepRate', )),
    HyperParameter('view', str, '', 'a', choices=('a', 'b'),
                   aliases=('pattern', ), from_alias=lambda v: 'ab'[v]),
    HyperParameter('flag', bool, '', True),
    HyperParameter('cap', int, '', None),
)


def test_resolve_layers_and_aliases():
    values = resolve(PARAMETERS, {'rate': 1, 'pattern': 1},
                     {'keepRate': 0.25, 'cap': 3})
    assert values == {'rate': 0.25, 'view': 'b', 'flag': True, 'cap': 3}
    assert isinstance(resolve(PARAMETERS, {'rate': 1})['rate'], float)
    # The authors' scripts pass booleans as 0/1:
    assert resolve(PARAMETERS, {'flag': 0})['flag'] is False


@pytest.mark.parametrize('text,expected', [
    ('200,600', (200, 600)), ('[200, 600]', (200, 600)), ('[1000]', (1000, )),
])
def test_int_list_parameter(text, expected):
    parameter = HyperParameter('dims', tuple, 'sizes', (1000, ))
    assert parameter.check(text) == expected
    assert parameter.check(list(expected)) == expected
    for bad in ('', '[a]', [1.5], 3):
        with pytest.raises(ValueError, match='dims must be a list of int'):
            parameter.check(bad)


@pytest.mark.parametrize('layer,match', [
    ({'bogus': 1}, "f: unknown hyper-parameter 'bogus'"),
    ({'rate': 'x'}, "f: rate must be a float"),
    ({'rate': True}, 'f: rate must be a float'),
    ({'flag': 2}, 'f: flag must be a bool'),
    ({'flag': 'yes'}, 'f: flag must be a bool'),
    ({'cap': 2.5}, 'f: cap must be an int'),
    ({'view': 'c'}, "f: view must be one of 'a', 'b'"),
])
def test_resolve_errors(layer, match):
    with pytest.raises(ValueError, match=match):
        resolve(PARAMETERS, layer, where='f: ')


def test_recipe_presets_and_errors():
    recipe = get_recipe('diffkg')(preset='lastfm', keep_rate=0.2)
    assert recipe.hparams['keep_rate'] == 0.2  # Given beats the preset,
    assert recipe.hparams['ckgc_weight'] == 0.01  # the preset the default.
    assert recipe.hparams['main_view'] == 'original'
    with pytest.raises(ValueError, match="unknown preset 'x' for diffkg"):
        get_recipe('diffkg')(preset='x')
    with pytest.raises(ValueError, match="lightgcn: unknown hyper-param"):
        get_recipe('lightgcn')(keep_rate=0.1)
