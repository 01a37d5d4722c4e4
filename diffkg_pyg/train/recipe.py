r"""The recipe: how the package's :class:`~diffkg_pyg.train.Trainer` trains
one kind of model. A model plugs in by subclassing :class:`Recipe` (see
``examples/custom_model.py``); the training maths stays in the model."""
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    ClassVar,
    Dict,
    List,
    Optional,
    Tuple,
)

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from diffkg_pyg.data.graph import KG
from diffkg_pyg.train.hyperparameters import (
    TRAIN_SETTINGS,
    HyperParameter,
    Space,
    resolve,
)

if TYPE_CHECKING:  # pragma: no cover
    from diffkg_pyg.train.trainer import Trainer

__all__ = ['Sizes', 'Recipe']


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
    epochs, validation after every epoch, early stopping, restoring the best
    state, the test evaluation, checkpoints and exact resume, Ctrl-C, the
    non-finite-loss stop, progress bars and the log. A recipe says what is
    particular to its model:

    * class attributes :obj:`name`, :obj:`description` (one line),
      :obj:`hyperparameters` (a tuple of
      :class:`~diffkg_pyg.train.HyperParameter`, usually built by
      :func:`~diffkg_pyg.train.from_signature` from the model's
      constructor; their :obj:`space` is where ``diffkg-pyg tune``
      searches them), :obj:`presets` (named hyper-parameter sets, which
      may also hold training settings such as :obj:`lr`: those land in
      :attr:`preset_settings`) and :obj:`setting_spaces`;
    * :meth:`prepare` / :meth:`prepare_inference`: what the model's
      structure needs beyond the sizes (e.g. L-DiffRec's item clusters),
      before it is built;
    * :meth:`build_model`: the :class:`torch.nn.Module` for the data's
      sizes (required);
    * :meth:`setup`: the graph inputs and other state, once, on the
      trainer's device;
    * :meth:`configure_optimizers`: by default one
      :class:`torch.optim.Adam` over all parameters;
    * :meth:`train_epoch`: one epoch of steps through
      :meth:`Trainer.step <diffkg_pyg.train.Trainer.step>` (required);
    * :meth:`scores`: the function mapping user indices to the scores of
      all items, for evaluation (required);
    * :meth:`state_dict` / :meth:`load_state_dict`: state beside the
      model's parameters that evaluation depends on (checkpointed and kept
      with the best epoch);
    * :meth:`inference_inputs` / :meth:`setup_inference`: what
      :func:`~diffkg_pyg.train.save_model` stores beside the parameters
      and the train pairs, and how scoring is set up from it.

    Args:
        preset (str, optional): A key of :obj:`presets` applied on top of
            the defaults. (default: :obj:`None`)
        **hyperparameters: Values of the declared hyper-parameters (names
            or aliases), on top of the preset.
    """
    name: ClassVar[str] = ''
    description: ClassVar[str] = ''
    hyperparameters: ClassVar[Tuple[HyperParameter, ...]] = ()
    presets: ClassVar[Dict[str, Dict[str, Any]]] = {}
    #: Search spaces of training settings for this model where they differ
    #: from those of :data:`TRAIN_SETTINGS` (e.g. :obj:`{'lr': Space(...)}`).
    setting_spaces: ClassVar[Dict[str, Space]] = {}
    #: Prefixes of state-dict keys that :func:`save_model` leaves out
    #: (parameters that inference does not use).
    inference_skip: ClassVar[Tuple[str, ...]] = ()

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

    def prepare(self, data: HeteroData, seed: int) -> None:
        r"""Called by the trainer before :meth:`build_model`, with the
        dataset and the run's seed: computes what the model's structure
        depends on beyond the sizes, from the train data only (keep it in
        :meth:`inference_inputs` for saved models)."""

    def prepare_inference(self, inputs: Dict[str, Tensor]) -> None:
        r"""The same as :meth:`prepare` for a saved model, from its
        :meth:`inference_inputs`, before :meth:`build_model`."""

    def build_model(self, sizes: Sizes) -> torch.nn.Module:
        r"""Creates the model for a dataset of these sizes from
        :obj:`self.hparams`."""
        raise NotImplementedError

    def setup(self, model: torch.nn.Module, trainer: 'Trainer',
              data: HeteroData) -> None:
        r"""Prepares training (graph inputs, sampled graphs) on
        :obj:`trainer.device`, after the model is built and moved there."""
        self.setup_inference(model, trainer.train_edge_index, {})

    def configure_optimizers(self, model: torch.nn.Module,
                             trainer: 'Trainer'
                             ) -> List[torch.optim.Optimizer]:
        r"""The optimisers (their states are checkpointed)."""
        return [torch.optim.Adam(model.parameters(), lr=trainer.lr,
                                 weight_decay=trainer.weight_decay)]

    def train_epoch(self, model: torch.nn.Module, trainer: 'Trainer',
                    epoch: int) -> Dict[str, Any]:
        r"""Runs one training epoch (in training mode). Every optimiser step
        goes through :meth:`Trainer.step`, which records the loss terms;
        return anything else to log (counts, seconds of phases)."""
        raise NotImplementedError

    def scores(self, model: torch.nn.Module) -> Callable[[Tensor], Tensor]:
        r"""Called in evaluation mode, without gradients, once per
        evaluation: returns the function mapping user indices
        :obj:`[batch_size]` to the scores of all items
        :obj:`[batch_size, num_items]`."""
        raise NotImplementedError

    def state_dict(self) -> Dict[str, Any]:
        r"""State besides the model's parameters (tensors and plain
        values)."""
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass

    def summary(self) -> Dict[str, Any]:
        r"""Model-specific results, read after the best epoch is restored
        (written at the top level of the result JSON)."""
        return {}

    def inference_inputs(self) -> Dict[str, Tensor]:
        r"""The tensors, beyond the parameters and the train pairs, that
        :meth:`scores` needs (saved by :func:`save_model`)."""
        return {}

    def setup_inference(self, model: torch.nn.Module,
                        train_edge_index: Tensor,
                        inputs: Dict[str, Tensor]) -> None:
        r"""Prepares :meth:`scores` from the train pairs and the tensors of
        :meth:`inference_inputs` (on the model's device)."""

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(preset={self.preset!r})'
