r"""The recipe: how the package's :class:`~diffkg_pyg.train.Trainer` trains
one kind of model. A model plugs in by subclassing :class:`Recipe` (see
``examples/custom_model.py``); the training maths stays in the model."""
import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Dict, List, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from diffkg_pyg.data.graph import KG
from diffkg_pyg.hyperparameters import HyperParameter, Space, resolve
from diffkg_pyg.train.context import TrainContext
from diffkg_pyg.train.hyperparameters import TRAIN_SETTINGS

__all__ = ['Sizes', 'Recipe', 'require_relations']


@dataclass(frozen=True)
class Sizes:
    r"""The sizes of a dataset graph that models are built with."""
    num_users: int
    num_items: int
    num_entities: int
    num_relations: int

    @classmethod
    def from_data(cls, data: HeteroData) -> 'Sizes':
        r"""The sizes of a graph of
        :func:`~diffkg_pyg.data.build_hetero_data`."""
        return cls(data['user'].num_nodes, data['item'].num_nodes,
                   data['entity'].num_nodes, int(data[KG].num_relations))


class Recipe:
    r"""How to train one kind of model under the package's protocol.

    The :class:`~diffkg_pyg.train.Trainer` owns everything shared: seeding,
    epochs, validation, early stopping, restoring the best state, the test
    evaluation, checkpoints and exact resume, Ctrl-C, the non-finite-loss
    stop, progress bars and the log. A recipe says what is particular to
    its model, and sees the run only through a
    :class:`~diffkg_pyg.train.TrainContext` (device, generator, seed and
    settings, train pairs, batch helpers and the optimiser step).

    Class attributes:

    * :obj:`name`, :obj:`description` (one line);
    * :obj:`hyperparameters`: a tuple of
      :class:`~diffkg_pyg.train.HyperParameter`, usually built by
      :func:`~diffkg_pyg.train.from_signature` from the model's
      constructor (each declares its type, default, help, range, aliases
      and search space once);
    * :obj:`presets`: named hyper-parameter sets, which may also hold
      training settings such as :obj:`lr` (those land in
      :attr:`preset_settings`);
    * :obj:`setting_spaces` and :obj:`setting_aliases`: search spaces and
      other names of training settings where they differ from those of
      :data:`~diffkg_pyg.train.TRAIN_SETTINGS` (see
      :meth:`training_settings`);
    * :obj:`inference_skip`: prefixes of parameters that saved models
      leave out (those inference does not use);
    * :obj:`tiny`: hyper-parameters and training settings of a run of
      seconds on a graph of a hundred nodes (what the registry-wide tests
      train every registered model with).

    Hooks, in the order the trainer calls them:

    1. :meth:`prepare` (data, context): what the model's structure needs
       beyond the sizes (e.g. L-DiffRec's item clusters), from the train
       data, before the model is built; keep it in :meth:`state_dict`;
    2. :meth:`build_model` (sizes): the :class:`torch.nn.Module`
       (required);
    3. :meth:`setup` (model, context, data): graph inputs and other state,
       once, on the context's device (by default :meth:`setup_inference`);
    4. :meth:`configure_optimizers` (model, context): by default one
       :class:`torch.optim.Adam` over all parameters;
    5. every epoch, :meth:`train_epoch` (model, context, epoch): one epoch
       of steps through :meth:`TrainContext.step
       <diffkg_pyg.train.TrainContext.step>` (required);
    6. at every validation and at the test, :meth:`scores` (model): the
       function mapping user indices to the scores of all items
       (required);
    7. with checkpoints and the best epoch, :meth:`state_dict` /
       :meth:`load_state_dict`: the state beside the parameters that
       scoring depends on;
    8. after the fit, :meth:`summary` (model): model-specific results for
       the result JSON.

    A saved model (:func:`~diffkg_pyg.train.save_model`) holds the
    parameters, the train pairs and :meth:`state_dict`;
    :func:`~diffkg_pyg.train.load_model` calls :meth:`load_state_dict`,
    :meth:`build_model` and :meth:`setup_inference` (model, train pairs).

    Args:
        preset (str, optional): A key of :obj:`presets` applied on top of
            the defaults. (default: :obj:`None`)
        **hyperparameters: Values of the declared hyper-parameters (names
            or aliases), on top of the preset.
    """
    name: ClassVar[str] = ''
    description: ClassVar[str] = ''
    #: The model class the recipe builds. Where it declares its
    #: hyper-parameters (:func:`~diffkg_pyg.hyperparameters.
    #: hyperparameters`) and the recipe declares none, the recipe's
    #: :obj:`hyperparameters` are the model's.
    model_class: ClassVar[Optional[type]] = None
    hyperparameters: ClassVar[Tuple[HyperParameter, ...]] = ()
    presets: ClassVar[Dict[str, Dict[str, Any]]] = {}
    #: Search spaces of training settings for this model where they differ
    #: from those of :data:`TRAIN_SETTINGS` (e.g. :obj:`{'lr': Space(...)}`).
    setting_spaces: ClassVar[Dict[str, Space]] = {}
    #: Other names of training settings for this model, e.g. the authors'
    #: (:obj:`{'lr': ('lr2', )}`), on the command line and in config files.
    setting_aliases: ClassVar[Dict[str, Tuple[str, ...]]] = {}
    #: Prefixes of state-dict keys that :func:`save_model` leaves out
    #: (parameters that inference does not use).
    inference_skip: ClassVar[Tuple[str, ...]] = ()
    #: A configuration for runs of seconds on tiny graphs (tests).
    tiny: ClassVar[Dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if 'hyperparameters' not in cls.__dict__ and hasattr(
                cls.model_class, 'hyperparameters'):
            cls.hyperparameters = cls.model_class.hyperparameters

    def __init__(self, preset: Optional[str] = None,
                 **hyperparameters) -> None:
        if preset is not None and preset not in self.presets:
            raise ValueError(f'unknown preset {preset!r} for {self.name} '
                             f'(known: {", ".join(self.presets) or "none"})')
        self.preset = preset
        values = self.presets.get(preset, {})
        settings = {p.name for p in TRAIN_SETTINGS}
        #: The training settings of the preset (the command line applies
        #: them under the config file and the flags).
        self.preset_settings: Dict[str, Any] = {
            k: v for k, v in values.items() if k in settings}
        self.hparams: Dict[str, Any] = resolve(
            self.hyperparameters,
            {k: v for k, v in values.items() if k not in settings},
            hyperparameters, where=f'{self.name}: ' if self.name else '')

    def arguments_of(self, function: Callable) -> Dict[str, Any]:
        r"""The values of the hyper-parameters that are arguments of
        :obj:`function` (e.g. a model's loss method: its weights)."""
        names = inspect.signature(function).parameters
        return {k: v for k, v in self.hparams.items() if k in names}

    @property
    def model_kwargs(self) -> Dict[str, Any]:
        r"""The values of the hyper-parameters that are arguments of
        :obj:`model_class`'s constructor (not its loss weights, not the
        recipe's own settings): what :meth:`build_model` passes on."""
        return self.arguments_of(self.model_class.__init__)

    @classmethod
    def training_settings(cls) -> Tuple[HyperParameter, ...]:
        r""":data:`~diffkg_pyg.train.TRAIN_SETTINGS` as this model declares
        them: with its :obj:`setting_spaces` and :obj:`setting_aliases`
        (what the command line, config files and ``tune`` read)."""
        return tuple(dataclasses.replace(
            p, space=cls.setting_spaces.get(p.name, p.space),
            aliases=p.aliases + tuple(cls.setting_aliases.get(p.name, ())))
            for p in TRAIN_SETTINGS)

    def prepare(self, data: HeteroData, context: TrainContext) -> None:
        r"""Computes what the model's structure depends on beyond the sizes,
        from the train data only, before :meth:`build_model` (keep it in
        :meth:`state_dict`, so that saved models have it)."""

    def build_model(self, sizes: Sizes) -> torch.nn.Module:
        r"""Creates the model for a dataset of these sizes from
        :obj:`self.hparams`."""
        raise NotImplementedError

    def setup(self, model: torch.nn.Module, context: TrainContext,
              data: HeteroData) -> None:
        r"""Prepares training (graph inputs, sampled graphs) on
        :obj:`context.device`, after the model is built and moved there."""
        self.setup_inference(model, context.train_edge_index)

    def configure_optimizers(self, model: torch.nn.Module,
                             context: TrainContext
                             ) -> List[torch.optim.Optimizer]:
        r"""The optimisers (their states are checkpointed; the context's
        :obj:`optimizers` holds them during training)."""
        return [torch.optim.Adam(model.parameters(), lr=context.lr,
                                 weight_decay=context.weight_decay)]

    def train_epoch(self, model: torch.nn.Module, context: TrainContext,
                    epoch: int) -> Dict[str, Any]:
        r"""Runs one training epoch (in training mode). Every optimiser step
        goes through :meth:`TrainContext.step`, which records the loss
        terms; return anything else to log (counts, seconds of phases)."""
        raise NotImplementedError

    def embeddings(self, model: torch.nn.Module
                   ) -> Optional[Tuple[Tensor, Tensor]]:
        r"""For a dot-product model, called in evaluation mode without
        gradients: the final user and item embeddings, :obj:`[num_users,
        dim]` and :obj:`[num_items, dim]`, whose inner products are the
        scores (what :meth:`scores` ranks by default, and what
        :obj:`diffkg-pyg recommend --embeddings` exports); :obj:`None` for
        a model that scores otherwise (which then overrides
        :meth:`scores`)."""
        return None

    def scores(self, model: torch.nn.Module) -> Callable[[Tensor], Tensor]:
        r"""Called in evaluation mode, without gradients, once per
        evaluation: returns the function mapping user indices
        :obj:`[batch_size]` to the scores of all items
        :obj:`[batch_size, num_items]` (by default the inner products of
        :meth:`embeddings`)."""
        out = self.embeddings(model)
        if out is None:
            raise NotImplementedError(f'{type(self).__name__} defines '
                                      f'neither embeddings() nor scores()')
        user_emb, item_emb = out
        return lambda users: user_emb[users.to(user_emb.device)] @ \
            item_emb.t()

    def state_dict(self) -> Dict[str, Any]:
        r"""State besides the model's parameters that scoring depends on
        (tensors and plain values): checkpointed, kept with the best epoch
        and saved with the model."""
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        r"""Restores :meth:`state_dict` (also before :meth:`build_model`,
        when a saved model is loaded)."""

    def summary(self, model: torch.nn.Module) -> Dict[str, Any]:
        r"""Model-specific results, read after the best epoch is restored
        (written at the top level of the result JSON)."""
        return {}

    def setup_inference(self, model: torch.nn.Module,
                        train_edge_index: Tensor) -> None:
        r"""Prepares :meth:`scores` from the train pairs (on the model's
        device), after :meth:`load_state_dict` for a saved model."""

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(preset={self.preset!r})'


def require_relations(data: HeteroData, name: str) -> None:
    r"""Refuses a dataset without a knowledge graph (no relation types:
    DiffRec's layout) for the KG model :obj:`name`. A knowledge graph whose
    triplets were all removed (``--kg-ablation remove``) keeps its relation
    types and passes: the model then trains without knowledge."""
    if int(data[KG].num_relations) == 0:
        raise ValueError(f'{name} needs a knowledge graph and this dataset '
                         f'has none (no relation types: DiffRec layout); '
                         f'train lightgcn or mf on it')

