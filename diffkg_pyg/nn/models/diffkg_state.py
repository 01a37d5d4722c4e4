r"""The graph state of a :class:`~diffkg_pyg.DiffKG` run, and one call per
phase of its epochs, so that a hand-written PyG loop needs nothing else:

.. code-block:: python

    model = DiffKG.from_data(data)
    optimizer = model.configure_optimizers(lr=1e-3)
    model.init_kg(kg.edge_index, kg.edge_type)      # the KG, once per run
    for epoch in range(1, 21):
        model.train()
        for heads in model.shuffled_kg_heads().split(1024):     # phase 1
            optimizer.zero_grad()
            model.denoising_loss(train_edge_index, heads)[0].backward()
            optimizer.step()
        model.rebuild()                                          # phase 2
        for user, pos, neg in batches:                           # phase 3
            optimizer.zero_grad()
            loss, _ = model.recommendation_loss(train_edge_index, user,
                                                pos, neg)
            loss.backward()
            optimizer.step()
    items, scores = model.recommend(train_edge_index, user_index, k=20)

(``examples/pyg_loop.py`` runs it.) What the model derives from an input
graph (the adjacency, the CSR of the KG, the item-user embeddings) is
computed once per input tensor and kept.
"""
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor

from diffkg_pyg.csr import to_csr
from diffkg_pyg.nn.functional import check_user_index, top_k_unseen
from diffkg_pyg.optim import OptimizerGroup, SparseRowAdam

__all__ = ['DiffKGState', 'EdgeSet']

EdgeSet = Tuple[Tensor, Tensor]


class DiffKGState(torch.nn.Module):
    r"""The base of :class:`~diffkg_pyg.DiffKG` that holds a run's graph
    state: the knowledge graph of :meth:`init_kg`, the sampled KG of the
    original view (drawn once) and the denoised KG (rebuilt every epoch),
    which are the model's state (its :meth:`state_dict` holds the two
    KGs, so checkpoints and saved models do, and :meth:`to` moves them);
    and the calls of an epoch's phases: :meth:`shuffled_kg_heads` and
    :meth:`denoising_loss` (phase 1, the denoiser), :meth:`rebuild`
    (phase 2), :meth:`recommendation_loss` (phase 3), with
    :meth:`configure_optimizers` and :meth:`recommend`. The maths are
    :class:`~diffkg_pyg.DiffKG`'s.
    """
    def __init__(self) -> None:
        super().__init__()
        self.kg: Optional[EdgeSet] = None
        self.sampled_kg: Optional[EdgeSet] = None
        self.denoised_kg: Optional[EdgeSet] = None
        self._cache: Dict[str, Any] = {}

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

    def _cached(self, name: str, tensor: Tensor, compute, *version):
        # What an input graph derives (its adjacency, CSR, ...), computed
        # once per input tensor: the cache holds the tensor itself and its
        # version, so another tensor or an in-place change recomputes.
        key = (tensor._version, *version)
        hit = self._cache.get(name)
        if hit is None or hit[0] is not tensor or hit[1] != key:
            hit = self._cache[name] = (tensor, key, compute())
        return hit[2]

    def adjacency(self, edge_index: Tensor) -> Tensor:
        r""":meth:`build_adjacency` of the train pairs :obj:`edge_index`,
        built once per tensor."""
        return self._cached('adjacency', edge_index,
                            lambda: self.build_adjacency(edge_index))

    def init_kg(self, edge_index: Tensor, edge_type: Tensor,
                generator: Optional[torch.Generator] = None) -> None:
        r"""Sets the knowledge graph a run trains on (:obj:`data['entity',
        'relation', 'entity']`: pairs sorted by head, inverses included),
        on the model's device: caches its CSR by head, draws the sampled KG
        of the original view once (:meth:`sample_kg`) and starts the
        denoised KG as that sample, until the first :meth:`rebuild`. The
        two KGs are the model's state (its :meth:`state_dict` holds them,
        so checkpoints and saved models do)."""
        self.kg = (edge_index, edge_type)
        self.kg_ptr, self.kg_col = to_csr(edge_index, self.num_entities)
        self.kg_heads = torch.nonzero(self.kg_ptr[1:] > self.kg_ptr[:-1])
        self.kg_heads = self.kg_heads.view(-1)
        self.sampled_kg = self.sample_kg(edge_index, edge_type, generator)
        self.denoised_kg = self.sampled_kg

    def _kg_views(self) -> Tuple[EdgeSet, EdgeSet]:
        if self.sampled_kg is None:
            raise ValueError('DiffKG has no knowledge graph yet: call '
                             'model.init_kg(edge_index, edge_type) first '
                             '(or load a trained model)')
        return self.sampled_kg, self.denoised_kg

    def shuffled_kg_heads(self, generator: Optional[torch.Generator] = None
                          ) -> Tensor:
        r"""Phase 1's heads: those with KG edges, in random order (split
        them into batches for :meth:`denoising_loss`)."""
        perm = torch.randperm(self.kg_heads.numel(), generator=generator,
                              device=self.kg_heads.device)
        return self.kg_heads[perm]

    def denoising_loss(self, edge_index: Tensor, heads: Tensor,
                       generator: Optional[torch.Generator] = None
                       ) -> Tuple[Tensor, Dict[str, Tensor]]:
        r"""Phase 1, one step: :meth:`diffusion_loss` on the batch
        :obj:`heads` of the KG of :meth:`init_kg`, with the train pairs
        :obj:`edge_index` (their item-user embeddings computed once per
        state of the user table). Returns the loss and its terms
        :obj:`'diff'` and :obj:`'ckgc'`."""
        item_user_emb = self._cached(
            'item_user_emb', edge_index,
            lambda: self.item_user_embedding(edge_index),
            self.user_emb._version)
        loss, diff, ckgc = self.diffusion_loss(self.kg_ptr, self.kg_col,
                                               heads, item_user_emb,
                                               generator)
        return loss, {'diff': diff, 'ckgc': ckgc}

    def rebuild(self, batch_size: int = 1024,
                generator: Optional[torch.Generator] = None) -> EdgeSet:
        r"""Phase 2: the denoised KG becomes :meth:`rebuild_kg` of the KG
        of :meth:`init_kg`; returns it."""
        self.denoised_kg = self.rebuild_kg(*self.kg, batch_size=batch_size,
                                           generator=generator)
        return self.denoised_kg

    def recommendation_loss(self, edge_index: Tensor, user: Tensor,
                            pos_item: Tensor, neg_item: Tensor,
                            batch_size: Optional[float] = None
                            ) -> Tuple[Tensor, Dict[str, Tensor]]:
        r"""Phase 3, one step: :meth:`loss` of the triples with the
        adjacency of the train pairs :obj:`edge_index` and the two KG views
        (:meth:`views` of the model's KGs)."""
        main_kg, second_kg = self.views(*self._kg_views())
        return self.loss(self.adjacency(edge_index), main_kg, second_kg,
                         user, pos_item, neg_item, batch_size)

    def get_extra_state(self) -> Dict[str, Any]:
        state: Dict[str, Any] = {}
        if self.sampled_kg is not None:
            state = {'sampled_kg': list(self.sampled_kg),
                     'denoised_kg': list(self.denoised_kg)}
        # The noise columns once chosen (DiffKG's noise_columns=0 chooses
        # them from the device): a resumed run keeps the choice.
        columns = getattr(self, 'noise_columns', 0)
        if columns != 0:
            state['noise_columns'] = -1 if columns is None else columns
        return state

    def set_extra_state(self, state: Dict[str, Any]) -> None:
        if 'sampled_kg' in state:
            device = self.user_emb.device
            self.sampled_kg, self.denoised_kg = (
                tuple(t.to(device) for t in state[key])
                for key in ('sampled_kg', 'denoised_kg'))
        if 'noise_columns' in state:
            columns = state['noise_columns']
            if isinstance(columns, bool) or not isinstance(columns, int) \
                    or columns == 0 or columns < -1:
                raise ValueError(f'the saved noise_columns {columns!r} is '
                                 f'not -1 or a positive count (the file '
                                 f'was edited)')
            self.noise_columns = None if columns == -1 else columns

    def _apply(self, fn, *args, **kwargs):
        # `.to(device)` and the like move the graph state too; derived
        # structures are rebuilt on the new device.
        super()._apply(fn, *args, **kwargs)
        for name in ('kg', 'sampled_kg', 'denoised_kg'):
            if getattr(self, name, None) is not None:
                setattr(self, name, tuple(fn(t) for t in getattr(self,
                                                                 name)))
        if self.kg is not None:
            self.kg_ptr, self.kg_col, self.kg_heads = (
                fn(t) for t in (self.kg_ptr, self.kg_col, self.kg_heads))
        self._cache = {}
        return self

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

    @torch.no_grad()
    def recommend(self, edge_index: Tensor, user_index: Tensor, k: int = 20,
                  exclude_train: bool = True) -> Tuple[Tensor, Tensor]:
        r"""The top-:obj:`k` items of every user of :obj:`user_index`
        :obj:`[B]`, encoded with the KG of :obj:`main_view` and in
        evaluation mode whatever the module's mode (no dropout: the same
        items at every call).

        Args:
            edge_index (torch.Tensor): The train pairs :obj:`[2, num_pairs]`.
            user_index (torch.Tensor): Users :obj:`[B]`.
            k (int, optional): Items per user. (default: :obj:`20`)
            exclude_train (bool, optional): Never recommend a user's train
                items. (default: :obj:`True`)

        Returns:
            Item indices and their scores, both :obj:`[B, k]`, best first.
        """
        user_index = check_user_index(torch.as_tensor(
            user_index, device=edge_index.device), self.num_users)
        training = self.training
        self.eval()
        try:
            user_emb, item_emb = self.get_embedding(
                self.adjacency(edge_index),
                *self.eval_kg(*self._kg_views()))
        finally:
            self.train(training)
        ptr, col = self._cached('train_csr', edge_index, lambda: to_csr(
            edge_index, self.num_users)) if exclude_train else (None, None)
        return top_k_unseen(user_emb[user_index] @ item_emb.t(), user_index,
                            k, ptr, col)
