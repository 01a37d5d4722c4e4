r"""A new model is a model file plus one line of the registry:
:class:`~diffkg_pyg.train.bpr_recipe.BPRRecipe` trains, evaluates, saves
and loads a toy model that declares its hyper-parameters and has no recipe
of its own."""
import pytest
import torch
import torch.nn.functional as F

from diffkg_pyg.hyperparameters import HyperParameter, hyperparameters
from diffkg_pyg.train import (
    MODELS,
    Trainer,
    get_recipe,
    load_model,
    register,
    save_model,
)
from diffkg_pyg.train.bpr_recipe import BPRRecipe, recipe_for
from diffkg_pyg.train.registry import _LOADED
from tests.train.test_every_model import full_data


@hyperparameters(
    HyperParameter('embedding_dim', int, 'embedding size', range='[1, inf)'),
    HyperParameter('l2_weight', float, 'L2 weight', range='[0, inf)'),
)
class ToyMF(torch.nn.Module):
    r"""A toy matrix factorisation (the whole model file).

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
    """
    tiny = dict(embedding_dim=4)

    def __init__(self, num_users: int, num_items: int,
                 embedding_dim: int = 8) -> None:
        super().__init__()
        self.user_emb = torch.nn.Parameter(
            0.1 * torch.randn(num_users, embedding_dim))
        self.item_emb = torch.nn.Parameter(
            0.1 * torch.randn(num_items, embedding_dim))

    def forward(self, edge_index: torch.Tensor):
        return self.user_emb, self.item_emb

    def loss(self, user_emb, item_emb, user, pos_item, neg_item,
             l2_weight: float = 1e-4):
        u = user_emb[user]
        score = (u * (item_emb[pos_item] - item_emb[neg_item])).sum(-1)
        bpr = F.softplus(-score).mean()
        l2 = u.square().sum(-1).mean()
        return bpr + l2_weight * l2, {'bpr': bpr.detach()}


@pytest.fixture
def toy():
    MODELS['toy-mf'] = f'{__name__}:ToyMF'  # The one line.
    yield get_recipe('toy-mf')
    MODELS.pop('toy-mf')
    _LOADED.pop('toy-mf', None)


def test_a_model_class_in_the_registry_trains_saves_and_loads(toy, tmp_path):
    assert issubclass(toy, BPRRecipe) and toy.model_class is ToyMF
    assert toy.hyperparameters == ToyMF.hyperparameters
    assert toy.description == 'A toy matrix factorisation (the whole ' \
        'model file).'
    assert get_recipe('toy-mf') is toy  # One recipe class per name.
    recipe = toy(embedding_dim=4, l2_weight=0.5)
    trainer = Trainer(recipe, full_data(), ks=(20, ), log=lambda line: None,
                      batch_size=32, max_batches=2, seed=3)
    before = trainer.model.user_emb.detach().clone()
    result = trainer.fit(epochs=2, patience=5)
    assert trainer.model.user_emb.shape[1] == 4
    assert not torch.equal(trainer.model.user_emb, before)
    assert 0.0 <= result.valid['recall@20'] <= 1.0
    assert all(r['bpr'] > 0 for r in result.history)
    # The declared loss weight reaches the loss: the logged loss is the
    # BPR term plus 0.5 times the users' mean squared norm.
    assert all(r['loss'] > r['bpr'] for r in result.history)

    path = str(tmp_path / 'toy.pt')
    save_model(path, recipe, trainer.model, trainer.sizes,
               trainer.context.train_edge_index)
    loaded = load_model(path)
    users = torch.arange(5)
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model.user_emb[users] @ trainer.model.item_emb.t()
    assert torch.equal(loaded.scores(users), expected)


def test_a_bad_value_is_refused_by_the_model_declaration(toy):
    with pytest.raises(ValueError, match='embedding_dim must be >= 1'):
        toy(embedding_dim=0)


def test_a_model_class_without_a_loss_is_named():
    class NoLoss(torch.nn.Module):
        pass

    with pytest.raises(TypeError, match=r"NoLoss \(registered as 'x'\) "
                       'has no loss'):
        recipe_for(NoLoss, 'x')


def test_register_takes_recipes_only():
    with pytest.raises(TypeError, match='a model class is registered by a '
                       'line of MODELS'):
        register(ToyMF)
