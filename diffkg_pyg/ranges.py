r"""The valid values (:class:`Range`) and search spaces (:class:`Space`) of
hyper-parameters, which :class:`~diffkg_pyg.hyperparameters.HyperParameter`
declarations hold."""
import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

__all__ = ['Range', 'Space']


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

    def check(self, parameter: Any, where: str = '') -> None:
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

    def suggest(self, trial: Any, parameter: Any) -> Any:
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
