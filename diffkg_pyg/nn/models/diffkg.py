from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.data import HeteroData
from torch_geometric.utils import scatter

from diffkg_pyg.data.graph import KG
from diffkg_pyg.data.validate import validate
from diffkg_pyg.hyperparameters import hyperparameters
from diffkg_pyg.nn.conv.kg_attention import KGEncoder
from diffkg_pyg.nn.denoiser import SparseDenoiser
from diffkg_pyg.nn.diffusion import GaussianDiffusion
from diffkg_pyg.nn.functional import info_nce, symmetric_propagation
from diffkg_pyg.nn.kg_diffusion import (
    denoiser_loss,
    rebuild_kg,
    sample_support,
    segment_top_k,
)
from diffkg_pyg.nn.kg_noise import choose_noise_columns
from diffkg_pyg.nn.models.diffkg_hyperparameters import (
    HYPERPARAMETERS,
    MAIN_VIEWS,
    PRESETS,
    VIEWS,
)
from diffkg_pyg.optim import OptimizerGroup, SparseRowAdam

__all__ = ['DiffKG', 'PRESETS', 'MAIN_VIEWS', 'VIEWS', 'EdgeSet']

EdgeSet = Tuple[Tensor, Tensor]


def _check(condition: bool, name: str, value, allowed: str) -> None:
    if not condition:
        raise ValueError(f"DiffKG: {name} must be {allowed} (got {value!r})")


@hyperparameters(*HYPERPARAMETERS)
class DiffKG(torch.nn.Module):
    r"""The DiffKG model from the `"DiffKG: Knowledge Graph Diffusion Model
    for Recommendation" <https://arxiv.org/abs/2312.16890>`_ paper (WSDM
    2024), as specified in the package's method notes.

    **Recommendation encoder.** A relation-aware attention encoder
    (:class:`~diffkg_pyg.nn.KGEncoder`, :obj:`num_kg_layers` hops) turns the
    entity table :math:`\mathbf{E}_e` into knowledge-aware item embeddings;
    with the user table :math:`\mathbf{E}_u` they form
    :math:`\mathbf{X}_0 = [\mathbf{E}_u; \mathrm{KG}(\mathbf{E}_e)_{:I}]`,
    propagated over the user-item graph with self-loops,
    :math:`\mathbf{A} = \mathbf{D}^{-1/2} (\mathbf{B} + \mathbf{I})
    \mathbf{D}^{-1/2}`, and summed over layers:

    .. math::
        \mathbf{X} = \sum_{l=0}^{L} \mathbf{A}^l \mathbf{X}_0,
        \qquad \hat{y}_{ui} = \mathbf{x}_u^\top \mathbf{x}_i.

    **Knowledge-graph diffusion.** A Gaussian diffusion over the rows of the
    KG adjacency (:class:`~diffkg_pyg.nn.GaussianDiffusion`) with a sparse,
    edge-level denoiser (:class:`~diffkg_pyg.nn.SparseDenoiser`), trained on
    :math:`(1 - \lambda_0) \mathcal{L}_\mathrm{diff} + \lambda_0
    \mathcal{L}_\mathrm{CKGC}` (:meth:`diffusion_loss`); every epoch the KG
    is rebuilt from the denoised scores (:meth:`rebuild_kg`).

    **Objective** (:meth:`loss`): with a main view :math:`V_1` and a second
    view :math:`V_2` of the embeddings, encoded with the denoised KG and
    with the sampled original KG (order chosen by :obj:`main_view`),

    .. math::
        \mathcal{L} = -\frac{1}{B} \sum_{(u,i,j)} \log \sigma(\hat{y}_{ui} -
        \hat{y}_{uj}) + \lambda_2 \sum_{\mathbf{W}} \Vert \mathbf{W}
        \Vert_2^2 + \lambda_1 \left(\mathcal{L}_\mathrm{InfoNCE}^{users}
        + \mathcal{L}_\mathrm{InfoNCE}^{items}\right),

    the InfoNCE terms (temperature :math:`\tau`) contrasting every batch
    node's :math:`V_2` embedding (anchor) with its :math:`V_1` embedding
    (positive) and all :math:`V_1` embeddings of its type (negatives).

    With :obj:`views='paper'` (the default) the denoised KG really feeds
    one of the two views in training, as the paper describes (and the
    SSLRec port and the authors' repository since late 2025 do). The
    authors' published code did not train that: its :obj:`Main.py` passed
    the denoised KG into the dropout argument, so both training views encode
    the sampled original KG and differ only by their independent
    message-dropout masks, and the denoised KG is used at evaluation only
    (when it is the main view). :obj:`views='published-code'` reproduces
    that; the diffusion, CKGC and rebuild run unchanged.

    The model holds no graph: the normalised user-item adjacency with
    self-loops (:meth:`RunGraph.adjacency(True)
    <diffkg_pyg.data.RunGraph.adjacency>`) and the KGs, as
    :obj:`(edge_index, edge_type)`, are inputs of every method. A run's
    sampled and denoised KGs are kept beside it, by
    :class:`~diffkg_pyg.nn.models.DiffKGLoop` (a PyG loop) or by the
    trainer's recipe.

    Args:
        num_users (int): :math:`U`.
        num_items (int): :math:`I` (items are entities :math:`0..I-1`).
        num_entities (int): :math:`N`.
        num_relations (int): Relation types of the KG, inverses included.
    """
    def __init__(
        self,
        num_users: int,
        num_items: int,
        num_entities: int,
        num_relations: int,
        embedding_dim: int = 64,
        num_layers: int = 2,
        num_kg_layers: int = 1,
        kg_dropout: float = 0.1,
        kg_residual: float = 0.5,
        kg_sample_size: int = 10,
        l2_weight: float = 1e-7,
        ssl_weight: float = 0.1,
        temperature: float = 0.1,
        main_view: str = 'denoised',
        views: str = 'paper',
        denoiser_hidden_channels: int = 1000,
        time_channels: int = 10,
        norm: bool = True,
        denoiser_dropout: float = 0.5,
        diffusion_steps: int = 5,
        noise_scale: float = 0.1,
        noise_min: float = 1e-4,
        noise_max: float = 0.02,
        sampling_steps: int = 0,
        ckgc_weight: float = 0.5,
        rebuild_k: int = 1,
        keep_rate: float = 0.5,
        num_negatives: int = 1,
        noise_columns: int = 0,
        noise_gradient: bool = True,
        use_compile: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (('num_users', num_users),
                            ('num_items', num_items),
                            ('num_relations', num_relations)):
            _check(value >= 1, name, value, '>= 1')
        _check(num_entities >= num_items, 'num_entities', num_entities,
               f'>= num_items ({num_items})')
        _check(sampling_steps <= diffusion_steps, 'sampling_steps',
               sampling_steps,
               f'in [0, diffusion_steps] = [0, {diffusion_steps}]')

        self.num_users = num_users
        self.num_items = num_items
        self.num_entities = num_entities
        self.num_relations = num_relations
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.kg_sample_size = kg_sample_size
        self.l2_weight = l2_weight
        self.ssl_weight = ssl_weight
        self.temperature = temperature
        self.main_view = main_view
        self.views_of = views
        self.sampling_steps = sampling_steps
        self.ckgc_weight = ckgc_weight
        self.rebuild_k = rebuild_k
        self.keep_rate = keep_rate
        self.num_negatives = num_negatives
        #: The noise columns of the denoiser's steps (:obj:`None`: exact;
        #: :obj:`0`: not chosen yet, see :meth:`choose_noise_columns`).
        self.noise_columns: Optional[int] = \
            None if noise_columns == -1 else noise_columns
        self.noise_gradient = noise_gradient

        self.user_emb = Parameter(torch.empty(num_users, embedding_dim))
        self.entity_emb = Parameter(torch.empty(num_entities, embedding_dim))
        self.relation_emb = Parameter(
            torch.empty(num_relations, embedding_dim))
        self.kg_encoder = KGEncoder(embedding_dim, num_kg_layers, kg_dropout,
                                    kg_residual)
        self.denoiser = SparseDenoiser(num_entities, denoiser_hidden_channels,
                                       time_channels, norm, denoiser_dropout,
                                       use_compile)
        self.diffusion = GaussianDiffusion(diffusion_steps, noise_scale,
                                           noise_min, noise_max)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for weight in (self.user_emb, self.entity_emb, self.relation_emb):
            torch.nn.init.xavier_uniform_(weight)
        self.kg_encoder.reset_parameters()
        self.denoiser.reset_parameters()

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs) -> 'DiffKG':
        r"""Creates the model with the sizes of a dataset graph (see
        :func:`~diffkg_pyg.data.build_hetero_data`), checked by
        :func:`~diffkg_pyg.data.validate` (its train pairs and knowledge
        graph); :obj:`kwargs` are the hyper-parameters."""
        validate(data, splits=('edge_index', ), require_kg=True)
        return cls(data['user'].num_nodes, data['item'].num_nodes,
                   data['entity'].num_nodes, int(data[KG].num_relations),
                   **kwargs)

    def recommender_parameters(self):
        r"""The parameters of the recommendation objective (tables and
        attention), i.e. everything but the denoiser."""
        return [self.user_emb, self.entity_emb, self.relation_emb,
                *self.kg_encoder.parameters()]

    def configure_optimizers(self, lr: float = 1e-3,
                             weight_decay: float = 0.0) -> OptimizerGroup:
        r"""The optimisers the method trains with, as one object with
        :meth:`zero_grad` and :meth:`step`: :class:`torch.optim.Adam` on
        :meth:`recommender_parameters` (with :obj:`weight_decay`), Adam on
        the denoiser's dense parameters and
        :class:`~diffkg_pyg.optim.SparseRowAdam` on its entity tables
        (their gradients are sparse rows; plain Adam refuses them)."""
        return OptimizerGroup([
            torch.optim.Adam(self.recommender_parameters(), lr=lr,
                             weight_decay=weight_decay),
            torch.optim.Adam(self.denoiser.dense_parameters(), lr=lr),
            SparseRowAdam(self.denoiser.sparse_parameters(), lr=lr)])

    def views(self, sampled_kg: EdgeSet,
              denoised_kg: EdgeSet) -> Tuple[EdgeSet, EdgeSet]:
        r"""The KGs of the main and of the second training view: by
        :obj:`main_view` with :obj:`views='paper'`, the sampled original KG
        twice with :obj:`views='published-code'`."""
        if self.views_of == 'published-code':
            return sampled_kg, sampled_kg
        if self.main_view == 'denoised':
            return denoised_kg, sampled_kg
        return sampled_kg, denoised_kg

    def eval_kg(self, sampled_kg: EdgeSet, denoised_kg: EdgeSet) -> EdgeSet:
        r"""The KG that evaluation and recommendation encode with: the
        :obj:`main_view` one (whatever :obj:`views` is)."""
        return denoised_kg if self.main_view == 'denoised' else sampled_kg

    def sample_kg(self, edge_index: Tensor, edge_type: Tensor,
                  generator: Optional[torch.Generator] = None) -> EdgeSet:
        r"""Samples, per head, at most :obj:`kg_sample_size` of its KG edges
        uniformly (all of them when :obj:`kg_sample_size = -1`), keeping the
        order of :obj:`edge_index`."""
        if self.kg_sample_size == -1:
            return edge_index, edge_type
        score = torch.rand(edge_type.numel(), generator=generator,
                           device=edge_type.device)
        keep = segment_top_k(score, edge_index[0], self.kg_sample_size)
        return edge_index[:, keep], edge_type[keep]

    def get_embedding(self, adj: Tensor, kg_edge_index: Tensor,
                      kg_edge_type: Tensor) -> Tuple[Tensor, Tensor]:
        r"""Returns the final user and item embeddings,
        shapes :obj:`[num_users, d]` and :obj:`[num_items, d]`.

        Args:
            adj (torch.Tensor): The normalised adjacency with self-loops
                (:meth:`RunGraph.adjacency(True)
                <diffkg_pyg.data.RunGraph.adjacency>`).
            kg_edge_index (torch.Tensor): KG pairs :obj:`[2, num_edges]`.
            kg_edge_type (torch.Tensor): Their relations :obj:`[num_edges]`.
        """
        return self._embed(adj, [(kg_edge_index, kg_edge_type)])[0]

    def _embed(self, adj: Tensor, kgs) -> list:
        # Every KG view shares the adjacency: propagate all views at once
        # as one wider feature matrix (one sparse product per layer).
        views = []
        for kg_edge_index, kg_edge_type in kgs:
            entity = self.kg_encoder(self.entity_emb, self.relation_emb,
                                     kg_edge_index, kg_edge_type)
            views.append(torch.cat([self.user_emb, entity[:self.num_items]]))
        out = symmetric_propagation(adj, torch.cat(views, dim=-1),
                                    self.num_layers)
        return [(view[:self.num_users], view[self.num_users:])
                for view in out.split(self.embedding_dim, dim=-1)]

    def forward(self, adj: Tensor, kg_edge_index: Tensor,
                kg_edge_type: Tensor, edge_label_index: Tensor) -> Tensor:
        r"""Scores the user-item pairs :obj:`edge_label_index`
        :obj:`[2, num_pairs]` (see :meth:`get_embedding` for the graph
        arguments); returns :obj:`[num_pairs]`."""
        user, item = self.get_embedding(adj, kg_edge_index, kg_edge_type)
        return (user[edge_label_index[0]] *
                item[edge_label_index[1]]).sum(dim=-1)

    def loss(self, adj: Tensor, main_kg: EdgeSet, second_kg: EdgeSet,
             user: Tensor, pos_item: Tensor, neg_item: Tensor,
             batch_size: Optional[int] = None
             ) -> Tuple[Tensor, Dict[str, Tensor]]:
        r"""The recommendation objective on a batch of triples.

        Args:
            adj (torch.Tensor): See :meth:`get_embedding`.
            main_kg (tuple): :obj:`(edge_index, edge_type)` of the main view
                (see :meth:`views`).
            second_kg (tuple): The KG of the second view.
            user (torch.Tensor): Users :obj:`[B]`.
            pos_item (torch.Tensor): Their positive items :obj:`[B]`.
            neg_item (torch.Tensor): Their negative items :obj:`[B]`.
            batch_size (int, optional): The BPR divisor (the authors divide
                by the nominal batch size). (default: :obj:`B`)

        Returns:
            The loss and its detached terms :obj:`'bpr'`, :obj:`'reg'`,
            :obj:`'ssl'`.
        """
        if self.ssl_weight > 0:
            (user_emb, item_emb), (user_emb2, item_emb2) = self._embed(
                adj, [main_kg, second_kg])
        else:
            user_emb, item_emb = self.get_embedding(adj, *main_kg)
        pos = (user_emb[user] * item_emb[pos_item]).sum(dim=-1)
        neg = (user_emb[user] * item_emb[neg_item]).sum(dim=-1)
        bpr = -F.logsigmoid(pos - neg).sum() / (batch_size or user.numel())
        reg = self.l2_weight * sum(w.square().sum()
                             for w in self.recommender_parameters())
        loss = bpr + reg
        ssl = torch.zeros((), device=user.device)
        if self.ssl_weight > 0:
            tau = self.temperature
            ssl = (info_nce(user_emb2, user_emb, user, tau) +
                   info_nce(item_emb2, item_emb, pos_item, tau))
            loss = loss + self.ssl_weight * ssl
        return loss, {'bpr': bpr.detach(), 'reg': reg.detach(),
                      'ssl': ssl.detach()}

    @torch.no_grad()
    def item_user_embedding(self, edge_index: Tensor) -> Tensor:
        r""":math:`\mathbf{R}^\top \mathbf{E}_u` (detached), the sum of the
        user embeddings of every item's train users, from the train pairs
        :obj:`edge_index`; shape :obj:`[num_items, d]`."""
        return scatter(self.user_emb[edge_index[0]], edge_index[1], 0,
                       dim_size=self.num_items, reduce='sum')

    def diffusion_loss(self, kg_ptr: Tensor, kg_col: Tensor, heads: Tensor,
                       item_user_emb: Tensor,
                       generator: Optional[torch.Generator] = None
                       ) -> Tuple[Tensor, Tensor, Tensor]:
        r"""The denoiser objective on a batch of heads: a support is sampled
        (see :func:`~diffkg_pyg.nn.kg_diffusion.sample_support`), a step
        :math:`t \sim \mathcal{U}\{0..T-1\}` per head, and
        :func:`~diffkg_pyg.nn.kg_diffusion.denoiser_loss` is evaluated
        against the detached entity table.

        Args:
            kg_ptr (torch.Tensor): CSR row pointer of the KG by head
                :obj:`[num_entities + 1]`.
            kg_col (torch.Tensor): Its tails, sorted within every head.
            heads (torch.Tensor): The batch's heads :obj:`[B]`.
            item_user_emb (torch.Tensor): :meth:`item_user_embedding`.
            generator (torch.Generator, optional): For supports, steps,
                noise and dropout.

        Returns:
            The objective, its diffusion term and its CKGC term.
        """
        support = sample_support(kg_ptr, kg_col, heads, self.num_entities,
                                 self.num_negatives, generator)
        t = torch.randint(self.diffusion.steps, heads.shape,
                          generator=generator, device=heads.device)
        return denoiser_loss(self.denoiser, self.diffusion, support, t,
                             item_user_emb, self.entity_emb[heads].detach(),
                             self.ckgc_weight, generator=generator,
                             num_columns=self.choose_noise_columns(
                                 heads.device),
                             noise_gradient=self.noise_gradient)

    def choose_noise_columns(self, device: Optional[torch.device] = None
                             ) -> Optional[int]:
        r"""The noise columns of the denoiser's steps (:obj:`None`: exact):
        :obj:`noise_columns` when it was given, else (:obj:`0`) chosen once
        for :obj:`device` (default: the parameters') by
        :func:`~diffkg_pyg.nn.kg_noise.choose_noise_columns` and kept (in
        :meth:`state_dict` too, so that a resumed run keeps the choice)."""
        if self.noise_columns == 0:
            self.noise_columns = choose_noise_columns(
                self.num_entities, self.denoiser.hidden_channels,
                device or self.user_emb.device)
        return self.noise_columns

    def rebuild_kg(self, edge_index: Tensor, edge_type: Tensor,
                   batch_size: int = 1024,
                   generator: Optional[torch.Generator] = None) -> EdgeSet:
        r"""The denoised KG (see
        :func:`~diffkg_pyg.nn.kg_diffusion.rebuild_kg`) of the full KG
        :obj:`(edge_index, edge_type)` sorted by head."""
        return rebuild_kg(self.denoiser, self.diffusion, edge_index,
                          edge_type, self.num_entities, self.rebuild_k,
                          self.keep_rate, self.sampling_steps, batch_size,
                          generator)

    def get_extra_state(self) -> Dict[str, Any]:
        # The noise columns once chosen (noise_columns=0 chooses them from
        # the device): a resumed run keeps the choice.
        columns = self.noise_columns
        return {} if columns == 0 else {
            'noise_columns': -1 if columns is None else columns}

    def set_extra_state(self, state: Dict[str, Any]) -> None:
        if 'noise_columns' in state:
            columns = state['noise_columns']
            if isinstance(columns, bool) or not isinstance(columns, int) \
                    or columns == 0 or columns < -1:
                raise ValueError(f'the saved noise_columns {columns!r} is '
                                 f'not -1 or a positive count (the file '
                                 f'was edited)')
            self.noise_columns = None if columns == -1 else columns

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, num_entities={self.num_entities}, '
                f'num_relations={self.num_relations}, '
                f'embedding_dim={self.embedding_dim})')
