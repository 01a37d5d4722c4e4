r"""Declarations of hyper-parameters: each is declared once, next to its
model's signature (:func:`hyperparameters`), and the model's docstring
``Args:``, its range errors, the command-line flags and their help, the
presets, config files, the search spaces and the arguments saved with
results and checkpoints all come from that declaration."""
import dataclasses
import functools
import inspect
import math
import numbers
import textwrap
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

from diffkg_pyg.ranges import Range, Space

__all__ = ['HyperParameter', 'Range', 'Space', 'from_signature',
           'hyperparameters', 'lookup', 'resolve', 'parse_bool',
           'parse_int_list']

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
        doc (str, optional): Its entry in the model's docstring ``Args:``
            (reST; :func:`hyperparameters` adds the valid values, the
            aliases and the default). (default: :obj:`help`)
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
    doc: Optional[str] = None

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


def _plain(value: Any) -> Any:
    # A NumPy or other numbers' scalar as the Python number it stands for.
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value) if isinstance(value, numbers.Real) else value


def _entry(parameter: HyperParameter, indent: str) -> str:
    # The parameter's docstring entry, in the package's Google style.
    text = (parameter.doc or parameter.help).rstrip('.')
    text = text[0].upper() + text[1:]
    if parameter.range is not None:
        text += f'; {parameter.range}'
    if parameter.choices is not None:
        text += '; one of ' + ', '.join(f':obj:`{c!r}`'
                                        for c in parameter.choices)
    text += '.'
    if parameter.aliases:
        text += ' Also given as ' + ', '.join(
            f':obj:`{a}`' for a in parameter.aliases) + '.'
    text += f' (default: :obj:`{parameter.default!r}`)'
    head = f'{parameter.name} ({parameter.type_name}, optional): '
    return textwrap.fill(head + text, 79, initial_indent=indent,
                         subsequent_indent=indent + '    ',
                         break_on_hyphens=False, break_long_words=False)


def _with_args(doc: str, entries: Sequence[HyperParameter]) -> str:
    # The docstring with each declared parameter's entry at the end of its
    # Args: section (after the undeclared ones, e.g. the sizes).
    lines = (doc or '').rstrip().split('\n')
    at = next((i for i, line in enumerate(lines)
               if line.strip() == 'Args:'), None)
    if at is None:
        indent = min((len(line) - len(line.lstrip()) for line in lines[1:]
                      if line.strip()), default=4) * ' '
        lines += ['', indent + 'Args:']
        at = len(lines) - 1
    indent = lines[at][:len(lines[at]) - len(lines[at].lstrip())]
    end = at + 1
    while end < len(lines) and (not lines[end].strip() or (
            len(lines[end]) - len(lines[end].lstrip()) > len(indent))):
        end += 1
    while end > at + 1 and not lines[end - 1].strip():
        end -= 1
    for parameter in entries:  # Written once: here, not by hand as well.
        if any(line.strip().startswith(f'{parameter.name} (')
               for line in lines[at + 1:end]):
            raise TypeError(f'{parameter.name!r} is declared: its Args '
                            f'entry is written from the declaration, not '
                            f'by hand')
    added = [_entry(p, indent + '    ') for p in entries]
    at = next((i for i in range(at + 1, end)  # Before a **kwargs entry.
               if lines[i].strip().startswith('**')), end)
    return '\n'.join(lines[:at] + added + lines[at:]) + '\n'


def _function(attribute: Any) -> Callable:
    # The function behind a method, static method or class method.
    return getattr(attribute, '__func__', attribute)


def hyperparameters(*declared: HyperParameter,
                    losses: Sequence[str] = ('loss', ),
                    kwargs_of: Optional[type] = None
                    ) -> Callable[[type], type]:
    r"""Declares the hyper-parameters of a model class, once, next to its
    signature:

    .. code-block:: python

        @hyperparameters(
            HyperParameter('embedding_dim', int, 'embedding size',
                           range='[1, inf)'),
            HyperParameter('l2_weight', float, 'L2 weight',
                           range='[0, inf)'),
        )
        class MF(torch.nn.Module):
            def __init__(self, num_users, num_items, embedding_dim=64):
                ...

            def loss(self, user, pos_item, neg_item, l2_weight=1e-4):
                ...

    Each declared name is an argument of the constructor or of one of the
    model's loss methods (:obj:`losses`: a loss weight), and its default
    is taken from there (:func:`from_signature`). The class decorator sets
    the class attribute :obj:`hyperparameters` (what a recipe, the command
    line, config files, presets and ``diffkg-pyg tune`` read; and
    :obj:`hyperparameters_kwargs_of`, the :obj:`kwargs_of` below), checks
    every declared constructor argument when the model is built (a
    :class:`ValueError` naming the class, the argument and its valid
    values) and writes each declaration's entry (its :obj:`doc` or
    :obj:`help`, valid values, aliases and default) into the ``Args:``
    section of the class's docstring (or of the loss method's), after the
    entries written there by hand (the sizes and other undeclared
    arguments).

    Args:
        *declared (HyperParameter): The declarations, in the order the
            command line, the docs and ``diffkg-pyg tune`` show them.
        losses (sequence of str, optional): The methods whose arguments may
            be declared, besides the constructor. (default:
            :obj:`('loss', )`)
        kwargs_of (type, optional): A declared model the constructor passes
            its :obj:`**kwargs` to (e.g. a parent class): its declarations
            follow, in its order, each replaced by the one declared here
            under the same name (another default), and are checked by its
            own constructor. (default: :obj:`None`)
    """
    def decorate(cls: type) -> type:
        init = cls.__init__
        signature = inspect.signature(init)
        methods = [(name, cls.__dict__[name]) for name in losses
                   if name in cls.__dict__]
        arguments = [(init, signature.parameters)] + [
            (_function(m), inspect.signature(_function(m)).parameters)
            for _, m in methods]
        owner, by_owner = {}, {}
        for parameter in declared:
            for function, names in arguments:
                if parameter.name in names:
                    owner[parameter.name] = function
                    by_owner.setdefault(function, []).append(parameter)
                    break
            else:
                where = ' or '.join(f'{cls.__name__}.{name}' for name in
                                    ['__init__', *dict(methods)])
                raise TypeError(f'{parameter.name!r} is not an argument of '
                                f'{where}')
        filled = {p.name: p for function, group in by_owner.items()
                  for p in from_signature(function, *group)}
        own = tuple(filled[p.name] for p in declared)
        for parameter in own:
            parameter.check(parameter.default,
                            f'{cls.__name__}: the default of ')
        checked = [p for p in own if owner[p.name] is init]
        parameters = own
        if kwargs_of is not None:
            mine = {p.name: p for p in own}
            passed = tuple(mine.get(p.name, p)
                           for p in kwargs_of.hyperparameters)
            parameters = tuple(p for p in own if p.name not in {
                q.name for q in passed}) + passed

        @functools.wraps(init)
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            given = signature.bind(self, *args, **kwargs).arguments
            for parameter in checked:
                if parameter.name in given:
                    parameter.check(_plain(given[parameter.name]),
                                    f'{cls.__name__}: ')
            init(self, *args, **kwargs)

        cls.__init__ = __init__
        cls.hyperparameters = parameters
        cls.hyperparameters_kwargs_of = kwargs_of
        cls.__doc__ = _with_args(cls.__doc__, checked)
        for _, method in methods:
            function = _function(method)
            entries = [p for p in own if owner[p.name] is function]
            if entries:
                function.__doc__ = _with_args(function.__doc__, entries)
        return cls

    return decorate
