r"""Search spaces: which hyper-parameters and training settings a study
searches, and where (declared with the model, overridden by a
:obj:`--space` TOML file)."""
from typing import Any, Dict, Mapping, Optional, Tuple, Type

from diffkg_pyg.hyperparameters import HyperParameter, Space, lookup
from diffkg_pyg.train.hyperparameters import read_config
from diffkg_pyg.train.recipe import Recipe

__all__ = ['canonical_names', 'search_space', 'read_space']


def canonical_names(recipe: Type[Recipe]) -> Dict[str, Tuple[HyperParameter,
                                                        bool]]:
    r"""Name or alias -> (parameter, is a training setting)."""
    out = {k: (p, True) for k, (p, _) in
           lookup(recipe.training_settings()).items()}
    out.update({k: (p, False) for k, (p, _) in
                lookup(recipe.hyperparameters).items()})
    return out


def search_space(recipe: Type[Recipe], fixed: Any = (),
                 overrides: Optional[Mapping[str, Space]] = None
                 ) -> Dict[str, Tuple[HyperParameter, Space]]:
    r"""The search space of a model: every hyper-parameter and training
    setting with a declared space, with :obj:`overrides` (names or
    aliases to :class:`Space`) on top, less the names in :obj:`fixed`.

    Returns:
        name -> :obj:`(parameter, space)`, in declaration order.
    """
    names = canonical_names(recipe)
    out: Dict[str, Tuple[HyperParameter, Space]] = {}
    for parameter in recipe.training_settings():
        if parameter.space is not None:
            out[parameter.name] = (parameter, parameter.space)
    for parameter in recipe.hyperparameters:
        if parameter.space is not None:
            out[parameter.name] = (parameter, parameter.space)
    for key, space in (overrides or {}).items():
        if key not in names:
            raise ValueError(f'search space: unknown key {key!r}: neither '
                             f'a training setting nor a hyper-parameter of '
                             f'{recipe.name}')
        parameter = names[key][0]
        if parameter.name == 'seed':
            raise ValueError('search space: the seed is not searched (it '
                             'is fixed for every trial)')
        space.check(parameter)
        out[parameter.name] = (parameter, space)
    fixed = {names[k][0].name if k in names else k for k in fixed}
    clash = sorted(k for k in fixed if overrides and k in {
        names[o][0].name for o in overrides})
    if clash:
        raise ValueError(f'{clash[0]} is both given a value and searched '
                         f'(drop one)')
    return {k: v for k, v in out.items() if k not in fixed}


def read_space(path: str, recipe: Type[Recipe]
               ) -> Tuple[Dict[str, Space], Dict[str, Any]]:
    r"""Reads a :obj:`--space` TOML file: a table per searched name
    (:obj:`[lr]` with :obj:`low`, :obj:`high`, optional :obj:`log` and
    :obj:`step`, or :obj:`choices = [...]`), or a plain value to fix a
    parameter (:obj:`ssl_weight = 0.0`). Returns the spaces and the fixed
    values (both by name or alias as written)."""
    names = canonical_names(recipe)
    spaces, fixed = {}, {}
    for key, value in read_config(path).items():
        if key not in names:
            raise ValueError(f'{path}: unknown key {key!r}: neither a '
                             f'training setting nor a hyper-parameter of '
                             f'{recipe.name}')
        if isinstance(value, dict):
            spaces[key] = Space.from_config(value, f'{path}: [{key}]: ')
            spaces[key].check(names[key][0], f'{path}: ')
        else:
            fixed[key] = value
    return spaces, fixed
