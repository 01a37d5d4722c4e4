r""":func:`diffkg_pyg.hyperparameters.hyperparameters`: a model's
hyper-parameters declared once, next to its signature, and what comes
from the declaration (the defaults, the range errors at construction, the
docstring's ``Args:`` entries and the recipe's declarations)."""
import inspect
import re

import numpy as np
import pytest
import torch

from diffkg_pyg.hyperparameters import HyperParameter, Space, hyperparameters
from diffkg_pyg.train import get_recipe
from diffkg_pyg.train.registry import MODELS


@hyperparameters(
    HyperParameter('dim', int, 'embedding size', range='[1, inf)',
                   aliases=('d', )),
    HyperParameter('mode', str, 'how', choices=('a', 'b')),
    HyperParameter('weight', float, 'loss weight', doc=r':math:`\lambda`',
                   range='[0, inf)', space=Space(1e-3, 1.0, log=True)),
)
class Toy(torch.nn.Module):
    r"""A toy model.

    Args:
        num_items (int): The number of items.
    """
    def __init__(self, num_items: int, dim: int = 4, mode: str = 'a'):
        super().__init__()
        self.emb = torch.nn.Embedding(num_items, dim)
        self.mode = mode

    def loss(self, x: torch.Tensor, weight: float = 0.5) -> torch.Tensor:
        r"""The toy loss."""
        return weight * self.emb(x).square().sum()


def test_the_declaration_gives_defaults_errors_and_docs():
    assert [(p.name, p.default) for p in Toy.hyperparameters] == [
        ('dim', 4), ('mode', 'a'), ('weight', 0.5)]
    assert Toy(3, np.int64(2)).emb.embedding_dim == 2  # NumPy ints pass.
    for kwargs, message in ((dict(dim=0), 'Toy: dim must be >= 1 (got 0)'),
                            (dict(mode='c'), "Toy: mode must be one of 'a'"),
                            (dict(dim=2.5), 'Toy: dim must be an int')):
        with pytest.raises(ValueError, match=re.escape(message)):
            Toy(3, **kwargs)
    doc = ' '.join(inspect.getdoc(Toy).split())
    assert doc.index('num_items (int)') < doc.index(
        'dim (int, optional): Embedding size; >= 1. Also given as :obj:`d`.'
        ' (default: :obj:`4`)')
    assert "one of :obj:`'a'`, :obj:`'b'`" in doc
    assert 'weight' not in doc  # A loss weight: in loss's docstring.
    assert 'weight (float, optional): :math:`\\lambda`; >= 0.' in \
        inspect.getdoc(Toy.loss)


def test_a_declaration_is_written_once():
    class Model(torch.nn.Module):
        r"""Args:
            dim (int, optional): written by hand as well.
        """
        def __init__(self, dim: int = 4):
            super().__init__()

    with pytest.raises(TypeError, match='written from the declaration'):
        hyperparameters(HyperParameter('dim', int, 'size'))(Model)
    with pytest.raises(TypeError, match='not an argument of Model.__init__'):
        hyperparameters(HyperParameter('size', int, 'size'))(Model)
    with pytest.raises(ValueError, match='the default of dim must be >= 5'):
        hyperparameters(HyperParameter('dim', int, 'size',
                                       range='[5, inf)'))(Toy)


DECLARED = sorted(name for name in MODELS if hasattr(
    get_recipe(name).model_class, 'hyperparameters'))


def test_some_models_declare_next_to_their_signature():
    assert {'mf', 'kgin'} <= set(DECLARED)


@pytest.mark.parametrize('name', DECLARED)
def test_the_recipe_reads_the_models_declarations(name):
    recipe = get_recipe(name)
    model = recipe.model_class
    names = [p.name for p in recipe.hyperparameters]
    assert len(names) == len(set(names))
    for parameter in model.hyperparameters:  # The same objects, once.
        assert parameter in recipe.hyperparameters
    chain = [model]  # The model and those its **kwargs go to.
    while chain[-1].hyperparameters_kwargs_of is not None:
        chain.append(chain[-1].hyperparameters_kwargs_of)
    docs = ['\n'.join([inspect.getdoc(c)] + [  # With the loss methods'.
        inspect.getdoc(m) or '' for k, m in vars(c).items()
        if inspect.isfunction(getattr(m, '__func__', m))]) for c in chain]
    for parameter in model.hyperparameters:
        entry = re.escape(f'{parameter.name} ({parameter.type_name}, '
                          'optional):')
        counts = [len(re.findall(rf'^\s*{entry}\s', doc, re.M))
                  for doc in docs]
        # Once, in the first class of the chain that declares it.
        assert [c for c in counts if c][:1] == [1], (parameter.name, counts)


@pytest.mark.parametrize('name', DECLARED)
def test_every_declared_range_is_refused_at_construction(name):
    model = get_recipe(name).model_class
    init = inspect.signature(model.__init__).parameters
    sizes = {k: 4 for k, p in init.items()
             if k != 'self' and p.default is inspect.Parameter.empty}
    checked = 0
    for parameter in model.hyperparameters:
        if parameter.name not in init:
            continue
        if parameter.range is not None:
            low, high, low_closed, high_closed = parameter.range.bounds
            bad = low - 1 if low_closed else low
            if low == -float('inf'):
                bad = high + 1 if high_closed else high
        elif parameter.choices is not None:
            bad = 'no such choice' if parameter.type is str else None
        else:
            continue
        if bad is None or bad in (parameter.range.also if parameter.range
                                  else ()):
            continue
        bad = parameter.type(bad) if parameter.type in (int, float) and \
            not isinstance(bad, str) else bad
        with pytest.raises(ValueError, match=f'{model.__name__}: '
                           f'{parameter.name} must be'):
            model(**sizes, **{parameter.name: bad})
        checked += 1
    assert checked > 0
