r"""Declarations of hyper-parameters and training settings: one place per
model from which the command-line flags, their help, the presets, config
files and the arguments saved with results and checkpoints all come."""
import dataclasses
import inspect
import math
import sys
from dataclasses import dataclass
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

__all__ = ['HyperParameter', 'Range', 'Space', 'from_signature', 'resolve',
           'TRAIN_SETTINGS', 'check_settings', 'parse_bool',
           'parse_int_list', 'read_config', 'split_config', 'MAX_SEED']

_TYPE_NAMES = {int: 'int', float: 'float', str: 'str', bool: 'bool',
               tuple: 'list of int'}
_BOOLS = {'1': True, 'true': True, 'yes': True, 'on': True, '0': False,
          'false': False, 'no': False, 'off': False}


def parse_bool(text: str) -> bool:
    r"""A boolean from the command line: 1/0, true/false, yes/no, on/off."""
    key = str(text).strip().lower()
    if key not in _BOOLS:
        raise ValueError(f'not a boolean: {text!r} (use 1/0 or true/false)')
    return _BOOLS[key]


def parse_int_list(text: str) -> Tuple[int, ...]:
    r"""A list of integers from the command line: ``200,600`` or
    ``[200, 600]``."""
    items = [item.strip() for item in str(text).strip().strip('[]()')
             .split(',') if item.strip()]
    if not items and str(text).strip() in ('[]', '()'):
        return ()  # The empty list, as the authors' --out_dims '[]'.
    if not items or not all(item.lstrip('-').isdigit() for item in items):
        raise ValueError(f'not a list of integers: {text!r} (e.g. '
                         f'[200,600])')
    return tuple(int(item) for item in items)


def _number(text: str) -> float:
    text = text.strip()
    return {'inf': math.inf, '-inf': -math.inf}.get(text) or float(text)


@dataclass(frozen=True)
class Range:
    r"""The valid values of a numeric hyper-parameter, an interval in the
    usual notation: :obj:`'[1, inf)'` (at least 1), :obj:`'(0, inf)'`
    (positive), :obj:`'[0, 1)'`; :obj:`also` lists values accepted outside
    it (e.g. :obj:`-1` for "all").

    Args:
        interval (str): The interval.
        also (tuple, optional): Other valid values. (default: :obj:`()`)
    """
    interval: str
    also: Tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        text = self.interval.strip()
        if len(text) < 5 or text[0] not in '[(' or text[-1] not in '])' \
                or text.count(',') != 1:
            raise ValueError(f'a range is an interval such as [1, inf) (got '
                             f'{self.interval!r})')
        low, high = (_number(v) for v in text[1:-1].split(','))
        if not low <= high:
            raise ValueError(f'empty range {self.interval!r}')

    @property
    def bounds(self) -> Tuple[float, float, bool, bool]:
        r""":obj:`(low, high, low_closed, high_closed)`."""
        text = self.interval.strip()
        low, high = (_number(v) for v in text[1:-1].split(','))
        return low, high, text[0] == '[', text[-1] == ']'

    def __contains__(self, value: Any) -> bool:
        if value in self.also:
            return True
        low, high, low_closed, high_closed = self.bounds
        return ((value > low or (low_closed and value == low)) and
                (value < high or (high_closed and value == high)))

    def __str__(self) -> str:
        low, high, low_closed, high_closed = self.bounds
        if high == math.inf:
            text = f'{">=" if low_closed else ">"} {low:g}'
        elif low == -math.inf:
            text = f'{"<=" if high_closed else "<"} {high:g}'
        else:
            text = f'in {self.interval.strip()}'
        return text + ''.join(f' or {v!r}' for v in self.also)


@dataclass(frozen=True)
class Space:
    r"""Where ``diffkg-pyg tune`` searches a hyper-parameter: the interval
    :obj:`[low, high]` (on a log scale with :obj:`log`, on a grid of
    :obj:`step`), or one of :obj:`choices`.

    Args:
        low (float, optional): The lower bound. (default: :obj:`None`)
        high (float, optional): The upper bound. (default: :obj:`None`)
        log (bool, optional): Search :math:`\log` uniformly.
            (default: :obj:`False`)
        step (float, optional): The grid step. (default: :obj:`None`)
        choices (tuple, optional): The values to choose among (instead of
            an interval). (default: :obj:`None`)
    """
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None
    choices: Optional[Tuple[Any, ...]] = None

    def __post_init__(self) -> None:
        if self.choices is not None:
            if len(self.choices) == 0 or self.low is not None or \
                    self.high is not None:
                raise ValueError('a space is either non-empty choices or '
                                 'an interval low..high')
            return
        if self.low is None or self.high is None or \
                not self.low < self.high:
            raise ValueError(f'a space needs low < high (got {self.low}, '
                             f'{self.high})')
        if self.log and self.low <= 0:
            raise ValueError(f'a log space needs low > 0 (got {self.low})')
        if self.log and self.step is not None:
            raise ValueError('a space is either on a log scale or on a grid '
                             'of step, not both')

    def check(self, parameter: 'HyperParameter', where: str = '') -> None:
        r"""Raises :class:`ValueError` unless every value of this space is
        a valid value of :obj:`parameter`."""
        where = f'{where}search space of {parameter.name}: '
        if self.choices is not None:
            for value in self.choices:
                parameter.check(value, where)
        elif parameter.type not in (int, float):
            raise ValueError(f'{where}a {parameter.type_name} is searched '
                             f'among choices, not in an interval')
        elif parameter.type is int and not all(
                float(v).is_integer() for v in (self.low, self.high,
                                                self.step or 1)):
            raise ValueError(f'{where}the bounds of an int must be integers '
                             f'(got {self.low}, {self.high})')
        else:
            for value in (self.low, self.high):
                parameter.check(parameter.type(value), where)

    @classmethod
    def from_config(cls, value: Mapping[str, Any], where: str = '') -> 'Space':
        r"""A space from a table of a :obj:`--space` TOML file:
        :obj:`{low, high[, log][, step]}` or :obj:`{choices}`."""
        known = {'low', 'high', 'log', 'step', 'choices'}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f'{where}unknown key {unknown[0]!r} (known: '
                             f'{", ".join(sorted(known))})')
        try:
            choices = value.get('choices')
            return cls(value.get('low'), value.get('high'),
                       bool(value.get('log', False)), value.get('step'),
                       None if choices is None else tuple(
                           tuple(c) if isinstance(c, list) else c
                           for c in choices))
        except (ValueError, TypeError) as error:
            raise ValueError(f'{where}{error}') from None

    def to_dict(self) -> Dict[str, Any]:
        if self.choices is not None:
            return {'choices': [list(c) if isinstance(c, tuple) else c
                                for c in self.choices]}
        out: Dict[str, Any] = {'low': self.low, 'high': self.high}
        if self.log:
            out['log'] = True
        if self.step is not None:
            out['step'] = self.step
        return out

    def __contains__(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        return (isinstance(value, (int, float)) and
                self.low <= value <= self.high)

    def encode(self, value: Any) -> Any:
        # A value as Optuna stores it (lists as text).
        return ','.join(map(str, value)) if isinstance(value, tuple) else \
            value

    def suggest(self, trial: Any, parameter: 'HyperParameter') -> Any:
        r"""Draws a value of :obj:`parameter` from this space through the
        Optuna :obj:`trial`."""
        name = parameter.name
        if self.choices is not None:
            # Optuna's choices are scalars: lists are passed as text.
            encoded = [self.encode(c) for c in self.choices]
            value = trial.suggest_categorical(name, encoded)
            return self.choices[encoded.index(value)]
        if parameter.type is int:
            return trial.suggest_int(name, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high),
                                   step=self.step, log=self.log)


@dataclass(frozen=True)
class HyperParameter:
    r"""One hyper-parameter (or training setting) of a model.

    Args:
        name (str): Its name, a keyword argument of the model (snake case;
            the flag is its kebab case).
        type (type): :obj:`int`, :obj:`float`, :obj:`str`, :obj:`bool` or
            :obj:`tuple` (a list of integers: ``200,600`` on the command
            line, ``[200, 600]`` in a config file).
        help (str): One line for :obj:`--help` and :obj:`diffkg-pyg models`.
        default (Any, optional): The default (taken from the model's
            constructor by :func:`from_signature`).
        aliases (tuple of str, optional): Other accepted names, e.g. the
            authors' (:obj:`'ssl_reg'` for :obj:`'ssl_weight'`), on the
            command line and in config files. (default: :obj:`()`)
        from_alias (callable, optional): Converts a value given under an
            alias (e.g. the authors' :obj:`cl_pattern` 0/1 to
            :obj:`main_view` 'denoised'/'original'). (default: identity)
        alias_type (type, optional): The type of values given under an
            alias. (default: :obj:`type`)
        choices (tuple, optional): The allowed values.
        range (Range or str, optional): The valid values of a number (an
            interval such as :obj:`'[1, inf)'`, or a :class:`Range`); every
            value given on the command line, in a config file, to a recipe
            or in a search space is checked against it.
            (default: :obj:`None`: any)
        compared (bool, optional): Whether a resumed checkpoint must agree
            on it (:obj:`False` for what changes speed, not results).
            (default: :obj:`True`)
        space (Space, optional): Where ``diffkg-pyg tune`` searches it
            (:obj:`None`: not searched; the default or the given value
            is used). (default: :obj:`None`)
    """
    name: str
    type: type
    help: str
    default: Any = None
    aliases: Tuple[str, ...] = ()
    from_alias: Optional[Callable[[Any], Any]] = None
    alias_type: Optional[type] = None
    choices: Optional[Tuple[Any, ...]] = None
    range: Optional[Range] = None
    compared: bool = True
    space: Optional[Space] = None

    def __post_init__(self) -> None:
        if isinstance(self.range, str):
            object.__setattr__(self, 'range', Range(self.range))
        if self.space is not None:
            self.space.check(self)

    @property
    def flag(self) -> str:
        return '--' + self.name.replace('_', '-')

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES.get(self.type, self.type.__name__)

    def check(self, value: Any, where: str = '') -> Any:
        r"""Returns :obj:`value` as this parameter's type (an :obj:`int` is
        a valid :obj:`float`); raises :class:`ValueError` naming the
        parameter (and :obj:`where` it was given) otherwise. :obj:`None` is
        accepted where the default is :obj:`None`."""
        if value is None and self.default is None:
            return None
        if self.type is tuple:
            try:
                if isinstance(value, str):
                    value = parse_int_list(value)
                elif isinstance(value, (list, tuple)) and all(
                        isinstance(v, int) and not isinstance(v, bool)
                        for v in value):
                    value = tuple(value)
                else:
                    raise ValueError
            except ValueError:
                raise ValueError(f'{where}{self.name} must be a list of '
                                 f'integers such as [200, 600] (got '
                                 f'{value!r})') from None
        if self.type is bool and isinstance(value, int) and \
                not isinstance(value, bool) and value in (0, 1):
            value = bool(value)  # 0/1, as the authors' scripts pass them.
        ok = isinstance(value, self.type) and not (
            self.type is not bool and isinstance(value, bool))
        if self.type is float and isinstance(value, int) and \
                not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            article = 'an' if self.type_name[0] in 'aeiou' else 'a'
            raise ValueError(f'{where}{self.name} must be {article} '
                             f'{self.type_name} (got {value!r})')
        if self.type is float and not math.isfinite(value) and not (
                self.range is not None and value in self.range.also):
            # No hyper-parameter takes NaN or an infinity: refused here,
            # not blamed on the learning rate epochs later.
            raise ValueError(f'{where}{self.name} must be a finite number '
                             f'(got {value!r})')
        if self.choices is not None and value not in self.choices:
            raise ValueError(f'{where}{self.name} must be one of '
                             f'{", ".join(map(repr, self.choices))} (got '
                             f'{value!r})')
        if self.range is not None and value not in self.range:
            raise ValueError(f'{where}{self.name} must be {self.range} (got '
                             f'{value!r})')
        return value

    @property
    def help_text(self) -> str:
        r"""The help with the valid values and the default (what
        :obj:`--help` shows)."""
        valid = '' if self.range is None else f'; {self.range}'
        return f'{self.help} (default: {self.default}{valid})'

    def convert_alias(self, value: Any) -> Any:
        r"""The value of this parameter for :obj:`value` given under one of
        its aliases."""
        return value if self.from_alias is None else self.from_alias(value)


def from_signature(function: Callable,
                   *parameters: HyperParameter) -> Tuple[HyperParameter, ...]:
    r"""Fills in every declared parameter's default from the signature of
    :obj:`function` (a model's constructor), so that the default is written
    once, in the model. A declared name that is not an argument of
    :obj:`function` raises :class:`TypeError`."""
    signature = inspect.signature(function).parameters
    out = []
    for parameter in parameters:
        if parameter.name not in signature:
            raise TypeError(f'{parameter.name!r} is not an argument of '
                            f'{function.__qualname__}')
        default = signature[parameter.name].default
        if default is inspect.Parameter.empty:
            raise TypeError(f'{function.__qualname__} argument '
                            f'{parameter.name!r} has no default')
        out.append(dataclasses.replace(parameter, default=default))
    return tuple(out)


def lookup(parameters: Iterable[HyperParameter]
           ) -> Dict[str, Tuple[HyperParameter, bool]]:
    r"""Maps every name and alias to :obj:`(parameter, is_alias)`."""
    out = {}
    for parameter in parameters:
        out[parameter.name] = (parameter, False)
        for alias in parameter.aliases:
            out[alias] = (parameter, True)
    return out


def resolve(parameters: Sequence[HyperParameter],
            *layers: Mapping[str, Any], where: str = '') -> Dict[str, Any]:
    r"""The value of every parameter: its default, overridden by each of
    :obj:`layers` in turn (e.g. a preset, a config file, the command line).
    Keys may be names or aliases; an unknown key or a value of the wrong
    type raises :class:`ValueError`."""
    names = lookup(parameters)
    values = {p.name: p.default for p in parameters}
    for layer in layers:
        for key, value in layer.items():
            if key not in names:
                raise ValueError(f'{where}unknown hyper-parameter {key!r} '
                                 f'(known: {", ".join(sorted(values))})')
            parameter, is_alias = names[key]
            if is_alias:
                value = parameter.convert_alias(value)
            values[parameter.name] = parameter.check(value, where)
    return values


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
