r"""The kernel floors of ``speed_step.py --floor``: for each phase of a
DiffKG epoch and for the training step of each KG peer, the kernels that
no implementation of that work can skip, timed alone at the data's shapes
(median of ``repeats`` runs each). A phase or step cannot be faster than
its floor unless a kernel is; ``measured / floor`` is how far the rest
(gathers, elementwise work, allocations, autograd bookkeeping) adds.

* **recommendation** (DiffKG phase 3, one step): the :math:`2L` sparse
  products of the user-item propagation (forward and backward, both views'
  :math:`2d` columns at once) and, for the users' and the items' InfoNCE,
  the score product :math:`[V, d] \times [d, B]`, its exponentials and the
  two gradient products.
* **diffusion** (phase 1, one denoiser step of :math:`B` heads): the
  noise (and dropout) draws on the :math:`B \times K` entries the input
  layer sees (:math:`K = N` for the exact noise, the sampled columns
  otherwise), drawn once; the input layer's product :math:`[B, K] \times
  [K, H]` and its table gradient :math:`[K, B] \times [B, H]`; the CKGC
  products (:math:`\mathbf{W}_{2,:I}^\top (\mathbf{R}^\top
  \mathbf{E}_u)` and its gradient, :math:`I \times H \times d` each); and
  one fused Adam update of the rows the step moves (counted from a real
  step's gradients).
* **rebuild** (phase 2, whole): the :math:`H \times H` tables
  (:math:`\mathbf{W}_1^\top \mathbf{W}_2`, :math:`\mathbf{W}_2^\top
  \mathbf{W}_2`: two :math:`H \times N \times H` products); per batch of
  ranked heads and reverse step after the first (where :math:`\mathbf{g}
  = 0`), the two :math:`[b, H] \times [H, H]` products and the
  :math:`\tanh`; the sums of the scored edges' table rows (two
  :obj:`embedding_bag` passes); the selection's two sorts over the edges.
* **KGIN** (one step): per hop the KG aggregation and the user
  aggregation as sparse products of their kept edges (width :math:`d`,
  forward and backward).
* **KGAT** (one CF step): per layer the attention-weighted product over the
  collaborative KG (forward and backward) and the bi-interaction's two
  linear layers (one forward and two backward products each).
* **KGCL** (one step): three LightGCN passes (the main graph and the two
  views; :math:`L` products forward and :math:`L` backward each) and the
  users' and items' InfoNCE against all users and all items of a view.

The sparse products are :func:`torch.addmm` on CSR tensors of the real
graphs (PyG's :obj:`spmm` path); a gather-and-reduce over the same edges
moves at least the same data.
"""
import statistics
import time
from typing import Callable, Dict, Tuple

import torch
import torch.nn.functional as F
from common import synchronize
from torch import Tensor

from diffkg_pyg.data.graph import bipartite_adjacency
from diffkg_pyg.nn.kg_diffusion import sample_support


def median_seconds(kernel: Callable[[], object], repeats: int,
                   device: torch.device) -> float:
    r"""The median seconds of :obj:`kernel` over :obj:`repeats` runs after
    one warm-up (each run to its last kernel on a GPU)."""
    kernel()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        kernel()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _timed(parts: Dict[str, Tuple[Callable[[], object], float]],
           repeats: int, device: torch.device) -> Dict[str, float]:
    # {name: (kernel, count)} -> {name: count x median seconds}, floor_s.
    record = {name: count * median_seconds(kernel, repeats, device)
              for name, (kernel, count) in parts.items() if count > 0}
    record['floor_s'] = sum(record.values())
    return record


def csr(edge_index: Tensor, num_rows: int, num_cols: int) -> Tensor:
    r"""The CSR matrix of :obj:`edge_index` (row, column) with random
    values (a repeated pair becomes one entry, the sum of its values)."""
    row, col = edge_index
    value = torch.rand(row.numel(), device=row.device)
    return torch.sparse_coo_tensor(torch.stack([row, col]), value,
                                   (num_rows, num_cols)).coalesce() \
        .to_sparse_csr()


def spmm(matrix: Tensor, width: int) -> Callable[[], object]:
    r"""One sparse product of :obj:`matrix` with a dense :obj:`width`-column
    operand, as the package calls it (no zero-filled output)."""
    x = torch.randn(matrix.size(1), width, device=matrix.device)
    out = torch.empty(matrix.size(0), width, device=matrix.device)
    return lambda: torch.addmm(out, matrix, x, beta=0)


def gemm(m: int, k: int, n: int, device: torch.device
         ) -> Callable[[], object]:
    r"""One dense :math:`[m, k] \times [k, n]` product."""
    a = torch.randn(m, k, device=device)
    b = torch.randn(k, n, device=device)
    return lambda: a @ b


def info_nce(num_nodes: int, batch: int, dim: int,
             device: torch.device) -> Callable[[], object]:
    r"""InfoNCE's unavoidable kernels: the score product :math:`[V, d]
    \times [d, B]`, its exponentials and the two gradient products."""
    positive = torch.randn(num_nodes, dim, device=device)
    anchor = torch.randn(batch, dim, device=device)

    def kernels():
        weight = (positive @ anchor.t()).exp_()  # [V, B], kept.
        weight.t() @ positive  # The anchors' gradient.
        weight @ anchor  # The positives' gradient.
    return kernels


def recommendation_floor(trainer, repeats: int) -> Dict[str, float]:
    r"""DiffKG's recommendation step (see the module's text)."""
    model = trainer.model
    adj, d, batch = trainer.context.graph.adjacency(True), \
        model.embedding_dim, trainer.context.batch_size
    device = adj.device
    record = _timed({
        'spmm_s': (spmm(adj, 2 * d), 2 * model.num_layers),
        'infonce_users_s': (info_nce(model.num_users, batch, d, device), 1),
        'infonce_items_s': (info_nce(model.num_items, batch, d, device), 1),
    }, repeats, device)
    return {'num_layers': model.num_layers, 'batch_size': batch, **record}


def diffusion_floor(trainer, repeats: int) -> Dict[str, float]:
    r"""One DiffKG denoiser step of :obj:`batch_size` heads (see the
    module's text)."""
    model, context = trainer.model, trainer.context
    denoiser = model.denoiser
    device = model.user_emb.device
    batch = min(context.batch_size, context.graph.kg_heads.numel())
    n, h, d = model.num_entities, denoiser.hidden_channels, \
        model.embedding_dim
    columns = model.choose_noise_columns(device)
    k = n if columns is None or columns >= n else columns
    # The rows one real step moves (its gradients' distinct rows).
    generator = torch.Generator(device=device).manual_seed(0)
    heads = trainer.context.graph.kg_heads[:batch]
    model.zero_grad(set_to_none=True)
    loss, _ = trainer.recipe.loop.denoising_loss(heads, generator)
    loss.backward()
    rows = sum(p.size(0) if not p.grad.is_sparse else
               int(torch.unique(p.grad.coalesce().indices()[0]).numel())
               for p in denoiser.sparse_parameters() if p.grad is not None)
    support = sample_support(*context.graph.kg_csr, heads, n,
                             model.num_negatives, generator)
    model.zero_grad(set_to_none=True)

    buffer = torch.empty(batch, k, device=device)
    uniform = torch.empty(batch, k, device=device)

    def draws():
        buffer.normal_(generator=generator)
        if denoiser.dropout > 0:
            uniform.uniform_(generator=generator)

    param = torch.zeros(rows, h, device=device, requires_grad=True)
    param.grad = torch.randn(rows, h, device=device)
    adam = torch.optim.Adam([param], fused=device.type in ('cpu', 'cuda'))
    record = _timed({
        'draws_s': (draws, 1),
        'input_gemm_s': (gemm(batch, k, h, device), 1),
        'input_grad_gemm_s': (gemm(k, batch, h, device), 1),
        'ckgc_s': (gemm(h, model.num_items, d, device), 2),
        'adam_s': (adam.step, 1),
    }, repeats, device)
    return {'batch_size': batch, 'noise_columns': k, 'hidden_channels': h,
            'rows_moved': rows, 'support': int(support.index.numel()),
            **record}


def rebuild_floor(trainer, repeats: int) -> Dict[str, float]:
    r"""One DiffKG rebuild (see the module's text)."""
    model, context = trainer.model, trainer.context
    denoiser, diffusion = model.denoiser, model.diffusion
    device = model.user_emb.device
    edge_index = context.graph.kg[0]
    n, h = model.num_entities, denoiser.hidden_channels
    head = edge_index[0]
    heads, degree = torch.unique_consecutive(head, return_counts=True)
    ranked = degree > model.rebuild_k
    scored = ranked.repeat_interleave(degree)
    tail = edge_index[1, scored]
    num_ranked = int(ranked.sum())
    b = min(context.batch_size, max(num_ranked, 1))
    full, rest = divmod(num_ranked, b)
    steps = diffusion.steps - 1  # The first reverse step has g = 0.
    products = (2 if denoiser.norm else 1) * steps
    w1 = denoiser.input_emb.weight.detach()
    w2 = denoiser.output_emb.weight.detach()
    g = torch.randn(b, h, device=device)
    table = torch.randn(h, h, device=device)
    ptr = torch.cat([torch.zeros(1, dtype=torch.long, device=device),
                     degree[ranked].cumsum(0)])
    score = torch.rand(head.numel(), device=device)

    def batch_kernels():
        for _ in range(products):
            g @ table
        for _ in range(diffusion.steps):
            torch.tanh(g)

    def gathers():
        F.embedding_bag(tail, w1, ptr[:-1], mode='sum')
        F.embedding_bag(tail, w2, ptr[:-1], mode='sum')

    def sorts():
        order = torch.argsort(score, descending=True, stable=True)
        torch.argsort(head[order], stable=True)

    record = _timed({
        'tables_s': (gemm(h, n, h, device), 2),
        'reverse_s': (batch_kernels, full + rest / b),
        'gathers_s': (gathers, 1),
        'select_s': (sorts, 1),
    }, repeats, device)
    return {'heads_scored': num_ranked, 'edges_scored': int(tail.numel()),
            'batch_size': b, 'hidden_channels': h, **record}


def kgin_floor(trainer, repeats: int) -> Dict[str, float]:
    r"""One KGIN step (see the module's text)."""
    model, recipe = trainer.model, trainer.recipe
    device = model.user_emb.device
    d, layers, rate = model.embedding_dim, model.num_layers, \
        model.node_dropout
    kg, ui = recipe.kg[:2], recipe.train_edge_index
    gen = torch.Generator(device=device).manual_seed(0)
    if rate > 0:  # The edges the node dropout keeps (as the model draws).
        kg = kg[:, torch.randperm(kg.size(1), generator=gen,
                                  device=device)[:int(kg.size(1) * rate)]]
        ui = ui[:, torch.rand(ui.size(1), generator=gen,
                              device=device) >= 1.0 - rate]
    n = model.num_entities
    record = _timed({
        'kg_spmm_s': (spmm(csr(kg, n, n), d), 2 * layers),
        'ui_spmm_s': (spmm(csr(ui, model.num_users, n), d), 2 * layers),
    }, repeats, device)
    return {'num_layers': layers, 'kg_edges': int(kg.size(1)),
            'ui_edges': int(ui.size(1)), **record}


def kgat_floor(trainer, repeats: int) -> Dict[str, float]:
    r"""One KGAT CF step (see the module's text)."""
    model, recipe = trainer.model, trainer.recipe
    device = recipe.pairs.device
    m = model.num_entities + model.num_users
    graph = csr(recipe.pairs, m, m)
    sizes = [model.embedding_dim, *model.hidden_channels]
    parts = {}
    for i, (c_in, c_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        parts[f'spmm_{i}_s'] = (spmm(graph, c_in), 2)
        # lin1 and lin2: one forward and two backward products each.
        parts[f'linear_{i}_s'] = (gemm(m, c_in, c_out, device), 6)
    record = _timed(parts, repeats, device)
    return {'num_layers': len(sizes) - 1, 'edges': int(recipe.pairs.size(1)),
            **record}


def kgcl_floor(trainer, repeats: int) -> Dict[str, float]:
    r"""One KGCL step (see the module's text)."""
    model, recipe, context = trainer.model, trainer.recipe, trainer.context
    device = recipe.adj.device
    d, batch = model.embedding_dim, context.batch_size
    keep = 1.0 - recipe.hparams['ui_drop']
    edge_index = recipe.train_edge_index
    gen = torch.Generator(device=device).manual_seed(0)
    view = bipartite_adjacency(edge_index[:, torch.randperm(
        edge_index.size(1), generator=gen, device=device)[
            :int(edge_index.size(1) * keep)]], model.num_users,
        model.num_items)
    record = _timed({
        'main_spmm_s': (spmm(recipe.adj, d), 2 * model.num_layers),
        'view_spmm_s': (spmm(view, d), 4 * model.num_layers),
        'infonce_users_s': (info_nce(model.num_users, batch, d, device), 1),
        'infonce_items_s': (info_nce(model.num_items, batch, d, device), 1),
    }, repeats, device)
    return {'num_layers': model.num_layers, 'batch_size': batch, **record}


#: The floor of every (model, phase) that ``speed_step.py`` times.
FLOORS = {('diffkg', 'recommendation'): recommendation_floor,
          ('diffkg', 'diffusion'): diffusion_floor,
          ('diffkg', 'rebuild'): rebuild_floor,
          ('kgin', 'step'): kgin_floor,
          ('kgat', 'step'): kgat_floor,
          ('kgcl', 'step'): kgcl_floor}
