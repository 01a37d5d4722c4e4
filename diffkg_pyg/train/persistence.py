r"""Saving trained models for inference and loading them back, for every
model with a :class:`~diffkg_pyg.train.Recipe`: the file holds the model's
name, hyper-parameters and parameters, the dataset sizes, the train pairs
and the recipe's state (:meth:`Recipe.state_dict
<diffkg_pyg.train.Recipe.state_dict>`), all on the CPU, so that a model trained
on a GPU loads on a machine without one, and no dataset file is needed."""
import itertools
from dataclasses import asdict
from typing import Any, Dict, List, Optional, Tuple, Type

import torch
from torch import Tensor

from diffkg_pyg.csr import to_csr
from diffkg_pyg.data.validate import check_index
from diffkg_pyg.nn.functional import (
    check_user_index,
    mips_index,
    top_k_inner_product,
    top_k_unseen,
)
from diffkg_pyg.train.checkpoint import (
    check_sizes,
    check_state_tensors,
    lift_graph_state,
    load_checkpoint,
    save_atomic,
)
from diffkg_pyg.train.recipe import Recipe, Sizes
from diffkg_pyg.train.registry import get_recipe
from diffkg_pyg.utils import first_line, iter_tensors, to_device

__all__ = ['save_model', 'load_model', 'Recommender', 'check_saved_model',
           'check_model_state', 'check_raw_ids']

MODEL_FORMAT = 'diffkg_pyg.model/2'


def save_model(path: str, recipe: Recipe, model: torch.nn.Module,
               sizes: Sizes, train_edge_index: Tensor,
               raw_ids: Optional[Dict[str, List[str]]] = None,
               dataset: Optional[Dict[str, Any]] = None) -> None:
    r"""Saves :obj:`model` (trained with :obj:`recipe` on a dataset of
    :obj:`sizes` with the train pairs :obj:`train_edge_index`) for
    :func:`load_model`. Parameters under the recipe's
    :obj:`inference_skip` prefixes (e.g. DiffKG's denoiser) are left out.
    :obj:`raw_ids` (the dataset's own user and item ids,
    :func:`~diffkg_pyg.data.raw_ids`) let the model be asked and answer in
    them; :obj:`dataset` (the result's dataset record) lets
    :obj:`diffkg-pyg evaluate` tell whether it is given the same data.
    """
    state = {k: to_device(v, torch.device('cpu'))
             for k, v in model.state_dict().items()
             if not k.startswith(recipe.inference_skip or ('\0', ))}
    check_sizes(asdict(sizes), path)
    # A file that would not load is not written:
    check_index(train_edge_index, f'{path}: train_edge_index',
                [('user', sizes.num_users), ('item', sizes.num_items)])
    check_raw_ids(raw_ids, sizes, path)
    save_atomic({
        'format': MODEL_FORMAT,
        'model_name': recipe.name,
        'hyperparameters': recipe.hparams,
        'sizes': asdict(sizes),
        'state_dict': state,
        'train_edge_index': train_edge_index.cpu(),
        'recipe': to_device(recipe.state_dict(), torch.device('cpu')),
        'raw_ids': raw_ids,
        'dataset': dataset,
    }, path)


class Recommender:
    r"""A trained model ready to score and recommend (see
    :func:`load_model`).

    Args:
        recipe (Recipe): The model's recipe, set up for inference.
        model (torch.nn.Module): The model, in evaluation mode.
        sizes (Sizes): The dataset sizes.
        train_edge_index (torch.Tensor): The train pairs (never
            recommended back by default).
        raw_ids (dict, optional): The dataset's own ids, lists of strings
            under :obj:`'user'` and :obj:`'item'` (:obj:`None`: the ids are
            the indices). (default: :obj:`None`)
        dataset (dict, optional): The record of the dataset it was trained
            on (name, layout, fingerprint, split). (default: :obj:`None`)
    """
    def __init__(self, recipe: Recipe, model: torch.nn.Module, sizes: Sizes,
                 train_edge_index: Tensor,
                 raw_ids: Optional[Dict[str, List[str]]] = None,
                 dataset: Optional[Dict[str, Any]] = None) -> None:
        self.recipe = recipe
        self.model = model.eval()
        self.sizes = sizes
        self.train_edge_index = train_edge_index
        self.raw_ids = raw_ids
        self.dataset = dataset
        self.train_ptr, self.train_col = to_csr(train_edge_index,
                                                sizes.num_users)
        with torch.no_grad():
            self._scores = recipe.scores(model)
        self._mips = None

    @torch.no_grad()
    def scores(self, user_index: Tensor) -> Tensor:
        r"""The scores of all items for :obj:`user_index` :obj:`[B]`,
        shape :obj:`[B, num_items]` (an id outside the users raises
        :class:`ValueError`)."""
        user_index = check_user_index(torch.as_tensor(user_index),
                                      self.sizes.num_users)
        return self._scores(user_index.to(self.device))

    @torch.no_grad()
    def embeddings(self) -> Optional[Tuple[Tensor, Tensor]]:
        r"""The final user and item embeddings :obj:`[num_users, dim]` and
        :obj:`[num_items, dim]` of a dot-product model (the scores are
        their inner products), :obj:`None` for a model that scores
        otherwise (DiffRec's family)."""
        return self.recipe.embeddings(self.model)

    def ids(self, kind: str, index: Tensor) -> List[str]:
        r"""The dataset's own ids of the :obj:`kind` (:obj:`'user'` or
        :obj:`'item'`) indices :obj:`index` (the indices as text where the
        dataset had none)."""
        index = index.tolist()
        if self.raw_ids is None:
            return [str(i) for i in index]
        table = self.raw_ids[kind]
        return [table[i] for i in index]

    def index_of(self, kind: str, ids: List[str]) -> List[Optional[int]]:
        r"""The indices of the dataset's own :obj:`kind` ids :obj:`ids`
        (:obj:`None` for an id the model does not know)."""
        count = (self.sizes.num_users if kind == 'user' else
                 self.sizes.num_items)
        if self.raw_ids is None:
            return [int(i) if i.isdigit() and int(i) < count else None
                    for i in ids]
        table = {raw: i for i, raw in enumerate(self.raw_ids[kind])}
        return [table.get(i) for i in ids]

    @property
    def device(self) -> torch.device:
        r"""Where the model is (and its scores are computed)."""
        for tensor in itertools.chain(self.model.parameters(),
                                      self.model.buffers()):
            return tensor.device
        return torch.device('cpu')

    @torch.no_grad()
    def recommend(self, user_index: Tensor, k: int = 20,
                  exclude_train: bool = True,
                  search: str = 'exact') -> Tuple[Tensor, Tensor]:
        r"""The top-:obj:`k` items of every user of :obj:`user_index`
        :obj:`[B]`: item indices and scores, both :obj:`[B, k]`, best first
        (a user's train items left out when :obj:`exclude_train`; a user
        with fewer than :obj:`k` other items gets item :obj:`-1` at score
        :obj:`-inf` in the places left).

        :obj:`search` is :obj:`'exact'` (all scores, then
        :func:`torch.topk`) or, for a dot-product model, :obj:`'mips'`:
        faiss's exact inner-product index through PyG's
        :class:`~torch_geometric.nn.pool.MIPSKNNIndex`, built once, which
        gives the same lists without the :obj:`[B, num_items]` scores
        (:func:`~diffkg_pyg.nn.functional.top_k_inner_product`; needs
        :obj:`faiss-cpu`)."""
        user_index = check_user_index(user_index, self.sizes.num_users)
        seen = (self.train_ptr, self.train_col) if exclude_train else \
            (None, None)
        if search == 'exact':
            return top_k_unseen(self.scores(user_index), user_index.cpu(),
                                k, *seen)
        if search != 'mips':
            raise ValueError(f"'search' must be 'exact' or 'mips' (got "
                             f"{search!r})")
        if self._mips is None:
            out = self.embeddings()
            if out is None:
                raise ValueError(f'{self.recipe.name} does not score by '
                                 f'inner products of embeddings (MIPS '
                                 f'search); use the exact search')
            self._mips = (*out, mips_index(out[1]))
        user_emb, item_emb, index = self._mips
        return top_k_inner_product(user_emb, item_emb, user_index.cpu(), k,
                                   *seen, index=index)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.recipe.name}, '
                f'num_users={self.sizes.num_users}, '
                f'num_items={self.sizes.num_items})')


def load_model(path: str, map_location: Optional[torch.device] = None,
               recipes: Optional[Dict[str, Type[Recipe]]] = None
               ) -> Recommender:
    r"""Loads a model written by :func:`save_model` (or
    :obj:`diffkg-pyg train --save-model`) and returns a
    :class:`Recommender`.

    Args:
        path (str): The file.
        map_location (torch.device, optional): Where to put the model.
            (default: CPU)
        recipes (dict, optional): Recipes by name, for models that are not
            registered (a user's own). (default: the registry)
    """
    saved = load_checkpoint(path, torch.device('cpu'))
    if saved.get('format') == 'diffkg_pyg.model/1':
        raise ValueError(f'{path}: a model saved by diffkg_pyg 0.2, whose '
                         f'format this version no longer reads; save it '
                         f'again with this version (train with '
                         f'--save-model)')
    if saved.get('format') != MODEL_FORMAT:
        raise ValueError(f'{path}: not a model saved by this package '
                         f'(format {saved.get("format")!r})')
    missing_keys = [k for k in _MODEL_KEYS if k not in saved]
    if missing_keys:
        raise ValueError(f'{path}: the saved model has no '
                         f'{", ".join(missing_keys)} (truncated or edited '
                         f'file); save it again')
    saved['state_dict'], saved['recipe'] = lift_graph_state(
        saved['state_dict'], saved['recipe'])
    name = saved['model_name']
    if recipes is None or name not in recipes:
        try:
            recipe_class = get_recipe(name)
        except (KeyError, TypeError) as error:
            raise ValueError(f'{path}: {error.args[0]}; pass its recipe as '
                             f'recipes={{{name!r}: ...}}') from error
    else:
        recipe_class = recipes[name]
    try:
        return _restore(path, saved, recipe_class, map_location)
    except (RuntimeError, KeyError, TypeError, IndexError,
            AttributeError) as error:
        # What a consistent file cannot raise: the file was edited or
        # belongs to other code.
        raise ValueError(f'{path}: the saved model does not load '
                         f'({first_line(error)}); save it again with this '
                         f'version') from None


def check_raw_ids(raw_ids: Any, sizes: Sizes, where: str) -> None:
    r"""Raw ids (:obj:`None`, or a list of distinct strings per user and
    item, one per node) as :func:`save_model` takes them."""
    if raw_ids is None:
        return
    if not isinstance(raw_ids, dict) or set(raw_ids) != {'user', 'item'}:
        raise ValueError(f"{where}: raw_ids must map 'user' and 'item' to "
                         f"lists of ids")
    for kind, count in (('user', sizes.num_users),
                        ('item', sizes.num_items)):
        ids = raw_ids[kind]
        if not isinstance(ids, list) or len(ids) != count or \
                not all(isinstance(i, str) for i in ids):
            raise ValueError(f'{where}: raw_ids[{kind!r}] must be a list of '
                             f'{count} strings')
        if len(set(ids)) != count:
            raise ValueError(f'{where}: raw_ids[{kind!r}] repeats an id')


#: What a saved model holds.
_MODEL_KEYS = ('model_name', 'hyperparameters', 'sizes', 'state_dict',
               'train_edge_index', 'recipe')


def check_saved_model(saved: Dict, where: str) -> Sizes:
    r"""Checks what a saved model holds before anything is built from it
    (the same checks as a dataset's, see
    :func:`~diffkg_pyg.data.validate`): its sizes, its train pairs
    (:obj:`[2, N]` int64 user and item ids within the sizes) and the
    indices and values of its state (:func:`~diffkg_pyg.train.checkpoint.
    check_state_tensors`); returns the sizes."""
    sizes = Sizes(**check_sizes(saved['sizes'], where))
    check_index(saved['train_edge_index'], f'{where}: train_edge_index',
                [('user', sizes.num_users), ('item', sizes.num_items)])
    check_model_state(saved['state_dict'], saved['recipe'], sizes, where)
    check_raw_ids(saved.get('raw_ids'), sizes, where)
    if not isinstance(saved.get('dataset') or {}, dict):
        raise ValueError(f'{where}: the dataset record is not a dict')
    return sizes


def check_model_state(state_dict: Dict, recipe_state: Any, sizes: Sizes,
                      where: str) -> None:
    r"""The tensors of a model's :obj:`state_dict` finite, and the indices
    of its graph state (:obj:`_extra_state` entries) and of the recipe's
    state within the graph's nodes."""
    if not isinstance(state_dict, dict):
        raise ValueError(f'{where}: the parameters are not a state dict')
    bound = sizes.num_users + sizes.num_entities + 1
    for key, value in state_dict.items():
        # Indices are checked in the graph state only (buffers such as
        # step counters are integers that index nothing):
        check_state_tensors({key: value}, bound if key.endswith(
            '_extra_state') else None, where)
    # A recipe's indices address nodes or its own edge lists (KGAT's pair
    # ids): at most the nodes, or the entries of its state.
    entries = sum(t.numel() for _, t in iter_tensors(recipe_state))
    check_state_tensors(recipe_state, max(bound, entries),
                        f'{where}: recipe state')


def _restore(path: str, saved: Dict, recipe_class: Type[Recipe],
             map_location: Optional[torch.device]) -> 'Recommender':
    sizes = check_saved_model(saved, path)
    if not isinstance(saved['hyperparameters'], dict):
        raise ValueError(f'{path}: the hyper-parameters are not a dict')
    recipe = recipe_class(**saved['hyperparameters'])
    device = torch.device(map_location or 'cpu')
    recipe.load_state_dict(to_device(saved['recipe'], device))
    model = recipe.build_model(sizes)
    missing, unexpected = model.load_state_dict(saved['state_dict'],
                                                strict=False)
    skip = recipe.inference_skip or ('\0', )
    if unexpected or any(not k.startswith(skip) for k in missing):
        raise ValueError(f'{path}: parameters do not match the '
                         f'hyper-parameters (missing {missing}, unexpected '
                         f'{unexpected})')
    model = model.to(device).eval()
    train_edge_index = saved['train_edge_index']
    recipe.setup_inference(model, train_edge_index.to(device))
    return Recommender(recipe, model, sizes, train_edge_index,
                       saved.get('raw_ids'), saved.get('dataset'))
