r"""The training settings every model shares (:data:`TRAIN_SETTINGS`) and
config files; the declarations themselves are
:mod:`diffkg_pyg.hyperparameters`'s."""
import sys
from typing import Any, Dict, Mapping, Tuple

from diffkg_pyg.hyperparameters import HyperParameter, Space, lookup

__all__ = ['TRAIN_SETTINGS', 'check_settings', 'read_config',
           'split_config', 'MAX_SEED']


#: The largest seed torch's generators take (int64).
MAX_SEED = 2**63 - 1

#: The training settings every model shares (:class:`Trainer` arguments),
#: with the authors' names as aliases.
TRAIN_SETTINGS: Tuple[HyperParameter, ...] = (
    HyperParameter('epochs', int, 'epoch cap (in total, when resuming)', 200,
                   aliases=('epoch', ), range='[1, inf)'),
    HyperParameter('patience', int, 'early-stopping patience in epochs', 10,
                   range='[1, inf)'),
    HyperParameter('eval_every', int, 'epochs between validations (the last '
                   'epoch is always validated)', 1, range='[1, inf)'),
    HyperParameter('lr', float, 'learning rate of the Adam optimisers', 1e-3,
                   range='(0, inf)', space=Space(1e-4, 1e-2, log=True)),
    HyperParameter('weight_decay', float,
                   "Adam's weight decay (the models' own L2 terms are "
                   'hyper-parameters)', 0.0, range='[0, inf)'),
    HyperParameter('batch_size', int, 'training examples per step', 1024,
                   aliases=('batch', ), range='[1, inf)'),
    HyperParameter('eval_batch_size', int, 'users scored at once', 1024,
                   aliases=('tstBat', ), range='[1, inf)'),
    HyperParameter('seed', int, 'seed of initialisation and sampling', 0,
                   range=f'[0, {MAX_SEED + 1})'),
    HyperParameter('max_batches', int,
                   'cap on the training batches per epoch (smoke runs)',
                   None, range='[1, inf)'),
)


def check_settings(**values: Any) -> None:
    r"""Checks training settings (by name) against their declarations in
    :data:`TRAIN_SETTINGS`; raises :class:`ValueError` naming the first
    invalid one."""
    declared = {p.name: p for p in TRAIN_SETTINGS}
    for name, value in values.items():
        declared[name].check(value)


def read_config(path: str) -> Dict[str, Any]:
    r"""Reads a TOML config file (one table of keys)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with open(path, 'rb') as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f'{path}: not a valid TOML file: {error}') from None


def split_config(config: Mapping[str, Any], path: str, recipe
                 ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    r"""Splits a config's keys into training settings and the model's
    hyper-parameters (canonical names); an unknown key is an error naming
    it and the file."""
    settings = lookup(recipe.training_settings())
    model = lookup(recipe.hyperparameters)
    out: Tuple[Dict[str, Any], Dict[str, Any]] = ({}, {})
    for key, value in config.items():
        if key in ('model', 'preset'):
            continue
        for target, names in zip(out, (settings, model)):
            if key in names:
                parameter, is_alias = names[key]
                if is_alias:
                    value = parameter.convert_alias(value)
                target[parameter.name] = parameter.check(value,
                                                         f'{path}: ')
                break
        else:
            raise ValueError(
                f'{path}: unknown key {key!r}: neither a training setting '
                f'nor a hyper-parameter of {recipe.name} (see `diffkg-pyg '
                f'models {recipe.name}`)')
    return out
