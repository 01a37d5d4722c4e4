r"""A :class:`~diffkg_pyg.DiffKG` run's knowledge graphs beside the model,
and one call per phase of its epochs, so that a hand-written PyG loop needs
nothing else:

.. code-block:: python

    graph = RunGraph.from_data(data)             # the run's graph, once
    model = DiffKG.from_data(data)
    loop = DiffKGLoop(model, graph)              # samples the KG once
    optimizer = model.configure_optimizers(lr=1e-3)
    for epoch in range(1, 21):
        model.train()
        for heads in loop.shuffled_kg_heads().split(1024):      # phase 1
            optimizer.zero_grad()
            loop.denoising_loss(heads)[0].backward()
            optimizer.step()
        loop.rebuild()                                           # phase 2
        for user, pos, neg in batches:                           # phase 3
            optimizer.zero_grad()
            loss, _ = loop.recommendation_loss(user, pos, neg)
            loss.backward()
            optimizer.step()
    items, scores = loop.recommend(user_index, k=20)

(``examples/pyg_loop.py`` runs it.) The model stays stateless; the
trainer's recipe keeps the same loop (its KGs are the recipe's state:
checkpointed, kept with the best epoch and saved with the model).
"""
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from diffkg_pyg.data.run_graph import RunGraph
from diffkg_pyg.nn.functional import check_user_index, top_k_inner_product
from diffkg_pyg.nn.models.diffkg import DiffKG, EdgeSet

__all__ = ['DiffKGLoop']


class DiffKGLoop:
    r"""The state of one :class:`~diffkg_pyg.DiffKG` run that is not a
    parameter: the KG sampled once for the original view
    (:meth:`DiffKG.sample_kg`), the denoised KG (rebuilt every epoch, the
    sample until the first :meth:`rebuild`), and the item-user embeddings
    of phase 1 (computed once per state of the user table); with the calls
    of an epoch's phases, which pass the run's graph and these KGs to the
    model's maths.

    Args:
        model (DiffKG): The model.
        graph (RunGraph): The run's graph (the model's device).
        generator (torch.Generator, optional): For the KG sample.
        kgs (tuple, optional): :obj:`(sampled_kg, denoised_kg)` to start
            from instead of a sample (a saved model's; :obj:`graph` then
            needs no knowledge graph).
    """
    def __init__(self, model: DiffKG, graph: RunGraph,
                 generator: Optional[torch.Generator] = None,
                 kgs: Optional[Tuple[EdgeSet, EdgeSet]] = None) -> None:
        self.model = model
        self.graph = graph
        if kgs is None:
            sampled = model.sample_kg(*graph.kg, generator)
            kgs = sampled, sampled
        self.sampled_kg, self.denoised_kg = kgs
        self._item_user: Optional[Tuple[int, Tensor]] = None

    def shuffled_kg_heads(self, generator: Optional[torch.Generator] = None
                          ) -> Tensor:
        r"""Phase 1's heads: those with KG edges, in random order (split
        them into batches for :meth:`denoising_loss`)."""
        heads = self.graph.kg_heads
        perm = torch.randperm(heads.numel(), generator=generator,
                              device=heads.device)
        return heads[perm]

    def denoising_loss(self, heads: Tensor,
                       generator: Optional[torch.Generator] = None
                       ) -> Tuple[Tensor, Dict[str, Tensor]]:
        r"""Phase 1, one step: :meth:`DiffKG.diffusion_loss` on the batch
        :obj:`heads`. Returns the loss and its terms :obj:`'diff'` and
        :obj:`'ckgc'`."""
        version = self.model.user_emb._version
        if self._item_user is None or self._item_user[0] != version:
            self._item_user = version, self.model.item_user_embedding(
                self.graph.train_edge_index)
        loss, diff, ckgc = self.model.diffusion_loss(
            *self.graph.kg_csr, heads, self._item_user[1], generator)
        return loss, {'diff': diff, 'ckgc': ckgc}

    def rebuild(self, batch_size: int = 1024,
                generator: Optional[torch.Generator] = None) -> EdgeSet:
        r"""Phase 2: the denoised KG becomes :meth:`DiffKG.rebuild_kg` of
        the run's KG; returns it."""
        self.denoised_kg = self.model.rebuild_kg(
            *self.graph.kg, batch_size=batch_size, generator=generator)
        return self.denoised_kg

    def recommendation_loss(self, user: Tensor, pos_item: Tensor,
                            neg_item: Tensor,
                            batch_size: Optional[float] = None
                            ) -> Tuple[Tensor, Dict[str, Tensor]]:
        r"""Phase 3, one step: :meth:`DiffKG.loss` of the triples with the
        two KG views (:meth:`DiffKG.views`)."""
        main_kg, second_kg = self.model.views(self.sampled_kg,
                                              self.denoised_kg)
        return self.model.loss(self.graph.adjacency(True), main_kg,
                               second_kg, user, pos_item, neg_item,
                               batch_size)

    def embeddings(self) -> Tuple[Tensor, Tensor]:
        r"""The user and item embeddings, encoded with the KG of
        :obj:`main_view` (:meth:`DiffKG.eval_kg`) in the model's mode."""
        return self.model.get_embedding(
            self.graph.adjacency(True),
            *self.model.eval_kg(self.sampled_kg, self.denoised_kg))

    @torch.no_grad()
    def recommend(self, user_index: Tensor, k: int = 20,
                  exclude_train: bool = True) -> Tuple[Tensor, Tensor]:
        r"""The top-:obj:`k` items of every user of :obj:`user_index`
        :obj:`[B]` (:func:`~diffkg_pyg.nn.functional.top_k_inner_product`
        of :meth:`embeddings`), in evaluation mode whatever the model's
        mode (no dropout: the same items at every call), without the
        users' train items unless :obj:`exclude_train=False`. Returns item
        indices and scores, both :obj:`[B, k]`, best first."""
        user_index = check_user_index(torch.as_tensor(
            user_index, device=self.graph.device), self.model.num_users)
        training = self.model.training
        self.model.eval()
        try:
            user_emb, item_emb = self.embeddings()
        finally:
            self.model.train(training)
        seen = self.graph.train_csr if exclude_train else (None, None)
        return top_k_inner_product(user_emb, item_emb, user_index, k, *seen)

    def state_dict(self) -> Dict[str, list]:
        r"""The two KGs (what a checkpoint and a saved model keep)."""
        return {'sampled_kg': list(self.sampled_kg),
                'denoised_kg': list(self.denoised_kg)}

    def load_state_dict(self, state: Dict[str, list]) -> None:
        r"""Restores :meth:`state_dict` (on the graph's device)."""
        self.sampled_kg, self.denoised_kg = (
            tuple(t.to(self.graph.device) for t in state[key])
            for key in ('sampled_kg', 'denoised_kg'))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.model!r}, '
                f'kg_edges_kept={self.denoised_kg[0].size(1)})')
