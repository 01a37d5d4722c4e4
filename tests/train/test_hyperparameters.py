import inspect

import pytest

from diffkg_pyg import PRESETS, DiffKG
from diffkg_pyg.hyperparameters import resolve
from diffkg_pyg.train import (
    MODELS,
    TRAIN_SETTINGS,
    HyperParameter,
    Range,
    Sizes,
    Space,
    Trainer,
    from_signature,
    get_recipe,
)
from diffkg_pyg.train.hyperparameters import check_settings

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


@pytest.mark.parametrize('interval,inside,outside,text', [
    ('[1, inf)', [1, 5, 10**9], [0, -3, 0.5], '>= 1'),
    ('(0, inf)', [1e-9, 3.0], [0, 0.0, -1.0], '> 0'),
    ('[0, 1]', [0, 0.5, 1], [-0.1, 1.01], 'in [0, 1]'),
    ('(0, 1]', [0.2, 1.0], [0.0, 1.5], 'in (0, 1]'),
])
def test_range(interval, inside, outside, text):
    declared = Range(interval)
    assert all(v in declared for v in inside)
    assert not any(v in declared for v in outside)
    assert str(declared) == text
    assert -1 in Range(interval, also=(-1, ))
    assert str(Range(interval, also=(-1, ))) == f'{text} or -1'


@pytest.mark.parametrize('interval', ['1, inf', '[2, 1]', '[a, b]', '[1]'])
def test_bad_range(interval):
    with pytest.raises(ValueError):
        Range(interval)


def test_declared_range_is_checked_everywhere_it_is_given():
    parameter = HyperParameter('rate', float, 'a rate', 0.5, range='(0, 1]')
    assert parameter.check(1) == 1.0
    with pytest.raises(ValueError, match=r'rate must be in \(0, 1\] '
                       r'\(got 0.0\)'):
        parameter.check(0.0)
    assert '(default: 0.5; in (0, 1])' in parameter.help_text
    # A search space outside the range is refused where it is declared:
    with pytest.raises(ValueError, match='rate must be in'):
        HyperParameter('rate', float, 'a rate', 0.5, range='(0, 1]',
                       space=Space(0.5, 2.0))
    with pytest.raises(ValueError, match='lr must be > 0'):
        check_settings(lr=0.0)


def _outside(declared):
    low, high, low_closed, high_closed = declared.bounds
    if low != float('-inf'):
        value = low - 1 if low_closed else low
    else:
        value = high + 1 if high_closed else high
    assert value not in declared
    return value


CASES = [(name, parameter) for name in sorted(MODELS)
         for parameter in get_recipe(name).hyperparameters
         if parameter.range is not None]


@pytest.mark.parametrize('name,parameter', CASES,
                         ids=[f'{n}-{p.name}' for n, p in CASES])
def test_recipes_and_constructors_agree_on_ranges(name, parameter):
    # The declaration rejects a value outside the range wherever it is
    # given; the package's own model constructors reject it too.
    recipe_class = get_recipe(name)
    bad = parameter.type(_outside(parameter.range))
    with pytest.raises(ValueError, match=f'{parameter.name} must be'):
        recipe_class(**{parameter.name: bad})
    recipe = recipe_class()
    sizes = Sizes(num_users=10, num_items=8, num_entities=12,
                  num_relations=2)
    try:
        model = recipe.build_model(sizes)
    except AttributeError:  # Its structure needs prepare() (L-DiffRec's
        return  # clusters); its constructor is tested with the model.
    if not type(model).__module__.startswith('diffkg_pyg') or \
            parameter.name not in inspect.signature(type(model)).parameters:
        return  # PyG's LightGCN (its own checks), or a loss weight.
    recipe.hparams = {**recipe.hparams, parameter.name: bad}
    with pytest.raises(ValueError, match=parameter.name):
        recipe.build_model(sizes)
