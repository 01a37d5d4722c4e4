r"""The training protocol shared by every recommender of the package:
BPR triples with sampled negatives, validation early stopping on
Recall@20 (the test set is never looked at before the best epoch is
restored), and the full-ranking test evaluation.

The models own their maths; this module only drives them.
"""
import copy
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.nn.models import LightGCN
from torch_geometric.utils import to_torch_csr_tensor
from tqdm.auto import tqdm

from diffkg_pyg.data.graph import USER_ITEM
from diffkg_pyg.evaluation import RankingEvaluator

__all__ = [
    'sample_negative_items',
    'bipartite_adjacency',
    'FitResult',
    'fit',
    'train_lightgcn',
]


def sample_negative_items(user: Tensor, train_edge_index: Tensor,
                          num_items: int,
                          generator: Optional[torch.Generator] = None,
                          max_rounds: int = 100) -> Tensor:
    r"""Samples, for every entry of :obj:`user`, an item uniformly among the
    items that user has no train interaction with (vectorised rejection
    sampling).

    Args:
        user (torch.Tensor): Users, shape :obj:`[num_samples]`.
        train_edge_index (torch.Tensor): The train interactions,
            shape :obj:`[2, num_train]`.
        num_items (int): The number of items.
        generator (torch.Generator, optional): The random generator.
        max_rounds (int, optional): Give up after this many rejection rounds
            (reached only by users who interacted with almost every item).
            (default: :obj:`100`)
    """
    known = torch.sort(train_edge_index[0] * num_items +
                       train_edge_index[1]).values
    item = torch.randint(num_items, user.shape, generator=generator,
                         device=user.device)
    for _ in range(max_rounds):
        key = user * num_items + item
        position = torch.searchsorted(known, key).clamp(max=known.numel() - 1)
        redo = torch.nonzero(known[position] == key).view(-1)
        if redo.numel() == 0:
            return item
        item[redo] = torch.randint(num_items, redo.shape, generator=generator,
                                   device=user.device)
    raise ValueError(f'could not sample negative items in {max_rounds} '
                     f'rounds: some users interacted with (almost) every item')


def bipartite_adjacency(edge_index: Tensor, num_users: int, num_items: int,
                        add_self_loops: bool = False) -> Tensor:
    r"""Returns the symmetrically normalised adjacency matrix
    :math:`\mathbf{D}^{-1/2} \mathbf{A} \mathbf{D}^{-1/2}` of the user-item
    graph (users first, then items), optionally with self-loops added to
    :math:`\mathbf{A}`, as a sparse CSR tensor of shape
    :obj:`[num_users + num_items, num_users + num_items]`.

    Args:
        edge_index (torch.Tensor): User-item pairs :obj:`[2, num_pairs]`.
        num_users (int): The number of users.
        num_items (int): The number of items.
        add_self_loops (bool, optional): Add :math:`\mathbf{I}` to
            :math:`\mathbf{A}`. (default: :obj:`False`)
    """
    num_nodes = num_users + num_items
    user, item = edge_index[0], edge_index[1] + num_users
    row, col = torch.cat([user, item]), torch.cat([item, user])
    if add_self_loops:
        loop = torch.arange(num_nodes, device=edge_index.device)
        row, col = torch.cat([row, loop]), torch.cat([col, loop])
    degree = torch.bincount(row, minlength=num_nodes).float()
    norm = degree.pow(-0.5).masked_fill(degree == 0, 0.0)
    weight = norm[row] * norm[col]
    with warnings.catch_warnings():  # CSR tensors are labelled 'beta'.
        warnings.simplefilter('ignore', UserWarning)
        return to_torch_csr_tensor(torch.stack([row, col]), weight,
                                   size=(num_nodes, num_nodes))


@dataclass
class FitResult:
    r"""The outcome of :func:`fit`: the number of epochs run, the best epoch
    (by validation :obj:`metric`), the wall time, the validation metrics of
    the best epoch, the test metrics of the restored best model, and one
    record per epoch."""
    epochs_run: int
    best_epoch: int
    seconds: float
    valid: Dict[str, float]
    test: Dict[str, float]
    history: List[Dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> Dict:
        return asdict(self)


def fit(
    model: torch.nn.Module,
    train_epoch: Callable[[int], Dict[str, float]],
    score_users: Callable[[], Callable[[Tensor], Tensor]],
    valid_evaluator: RankingEvaluator,
    test_evaluator: RankingEvaluator,
    epochs: int,
    patience: int = 10,
    metric: str = 'recall@20',
    log: Optional[Callable[[str], None]] = None,
) -> FitResult:
    r"""Trains with validation early stopping, then tests the best epoch.

    Args:
        model (torch.nn.Module): The model; its :obj:`state_dict` is kept for
            the best epoch and restored before testing.
        train_epoch (callable): Runs one training epoch given its 1-based
            number and returns the numbers to log (losses, timings).
        score_users (callable): Called in evaluation mode once per
            evaluation; returns the scoring function of
            :class:`RankingEvaluator`.
        valid_evaluator (RankingEvaluator): Evaluates on validation.
        test_evaluator (RankingEvaluator): Evaluates on test.
        epochs (int): The epoch cap.
        patience (int, optional): Stop after this many epochs without a
            better validation :obj:`metric`. (default: :obj:`10`)
        metric (str, optional): The validation metric to select on.
            (default: :obj:`'recall@20'`)
        log (callable, optional): Receives one line per epoch.
    """
    if epochs < 1:
        raise ValueError(f"'epochs' must be >= 1 (got {epochs})")
    if patience < 1:
        raise ValueError(f"'patience' must be >= 1 (got {patience})")
    log = log or tqdm.write
    start = time.perf_counter()
    best_value, best_epoch, best_state = -1.0, 0, None
    best_valid: Dict[str, float] = {}
    history: List[Dict[str, float]] = []
    epoch = 0
    for epoch in range(1, epochs + 1):
        model.train()
        epoch_start = time.perf_counter()
        record = {'epoch': epoch, **train_epoch(epoch)}
        record['train_seconds'] = time.perf_counter() - epoch_start
        model.eval()
        valid = valid_evaluator(score_users())
        if metric not in valid:
            raise ValueError(f"unknown validation metric '{metric}' "
                             f"(available: {sorted(valid)})")
        record.update({f'valid_{k}': v for k, v in valid.items()})
        history.append(record)
        improved = valid[metric] > best_value
        if improved:
            best_value, best_epoch, best_valid = valid[metric], epoch, valid
            best_state = copy.deepcopy(model.state_dict())
        log(' | '.join(
            [f'epoch {epoch:3d}'] +
            [f'{k} {v:.4f}' for k, v in record.items()
             if k != 'epoch' and not k.startswith('valid_')] +
            [f'valid recall@20 {valid.get("recall@20", float("nan")):.4f}',
             f'ndcg@20 {valid.get("ndcg@20", float("nan")):.4f}'] +
            (['best'] if improved else [])))
        if epoch - best_epoch >= patience:
            log(f'early stop: no better valid {metric} for {patience} epochs')
            break
    model.load_state_dict(best_state)
    model.eval()
    test = test_evaluator(score_users())
    return FitResult(epoch, best_epoch, time.perf_counter() - start,
                     best_valid, test, history)


def _evaluators(data: HeteroData, ks: Sequence[int],
                batch_size: int, device: torch.device):
    store = data[USER_ITEM]
    num_users, num_items = data['user'].num_nodes, data['item'].num_nodes
    train, val = store.edge_index, store.val_edge_index
    if val.size(1) == 0:
        raise ValueError('the dataset has no validation interactions: '
                         'early stopping needs val_ratio > 0')
    valid = RankingEvaluator(val, [train], num_users, num_items, ks,
                             batch_size)
    test = RankingEvaluator(store.test_edge_index, [train, val], num_users,
                            num_items, ks, batch_size)
    return valid, test


def train_lightgcn(
    data: HeteroData,
    embedding_dim: int = 64,
    num_layers: int = 2,
    lr: float = 1e-3,
    batch_size: int = 1024,
    lambda_reg: float = 1e-4,
    epochs: int = 200,
    patience: int = 10,
    seed: int = 0,
    max_batches: Optional[int] = None,
    ks: Sequence[int] = (10, 20, 40),
    eval_batch_size: int = 1024,
    device: Optional[torch.device] = None,
    log: Optional[Callable[[str], None]] = None,
) -> FitResult:
    r"""Trains :class:`torch_geometric.nn.models.LightGCN` with the BPR loss
    on the train interactions of :obj:`data` under the package's protocol
    (see :func:`fit`).

    Every epoch samples one negative item per train interaction; the L2
    term is PyG's (:obj:`lambda_reg` times the squared norm of the batch's
    layer-0 embeddings, divided by the batch size). Scores are dot products
    of the final embeddings (the mean of the layer outputs).

    Args:
        data (HeteroData): A dataset graph (see
            :func:`~diffkg_pyg.data.build_hetero_data`).
        embedding_dim (int, optional): Embedding size. (default: :obj:`64`)
        num_layers (int, optional): Propagation layers. (default: :obj:`2`)
        lr (float, optional): Adam learning rate. (default: :obj:`1e-3`)
        batch_size (int, optional): BPR triples per step.
            (default: :obj:`1024`)
        lambda_reg (float, optional): L2 strength. (default: :obj:`1e-4`)
        epochs (int, optional): Epoch cap. (default: :obj:`200`)
        patience (int, optional): Early-stopping patience in epochs.
            (default: :obj:`10`)
        seed (int, optional): Seed of initialisation and sampling.
            (default: :obj:`0`)
        max_batches (int, optional): Cap on the steps per epoch (smoke runs).
        ks (list of int, optional): Metric cut-offs.
            (default: :obj:`(10, 20, 40)`)
        eval_batch_size (int, optional): Users scored at once.
            (default: :obj:`1024`)
        device (torch.device, optional): Where to train. (default: CPU)
        log (callable, optional): Receives one line per epoch.
    """
    device = torch.device(device or 'cpu')
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    num_users, num_items = data['user'].num_nodes, data['item'].num_nodes
    train = data[USER_ITEM].edge_index
    valid_evaluator, test_evaluator = _evaluators(data, ks, eval_batch_size,
                                                  device)
    model = LightGCN(num_users + num_items, embedding_dim, num_layers,
                     normalize=False).to(device)
    adjacency = bipartite_adjacency(train, num_users, num_items).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def train_epoch(epoch: int) -> Dict[str, float]:
        user = train[0]
        positive = train[1]
        negative = sample_negative_items(user, train, num_items, generator)
        perm = torch.randperm(user.numel(), generator=generator)
        batches = list(torch.split(perm, batch_size))[:max_batches]
        total = 0.0
        for batch in tqdm(batches, desc=f'epoch {epoch}', leave=False,
                          disable=None):
            u = user[batch].to(device)
            i = positive[batch].to(device) + num_users
            j = negative[batch].to(device) + num_users
            out = model.get_embedding(adjacency)
            pos_rank = (out[u] * out[i]).sum(dim=-1)
            neg_rank = (out[u] * out[j]).sum(dim=-1)
            loss = model.recommendation_loss(
                pos_rank, neg_rank, node_id=torch.cat([u, i, j]),
                lambda_reg=lambda_reg)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * batch.numel()
        return {'loss': total / max(1, sum(b.numel() for b in batches))}

    def score_users() -> Callable[[Tensor], Tensor]:
        with torch.no_grad():
            out = model.get_embedding(adjacency)
        user_emb, item_emb = out[:num_users], out[num_users:]
        return lambda users: user_emb[users.to(device)] @ item_emb.t()

    return fit(model, train_epoch, score_users, valid_evaluator,
               test_evaluator, epochs, patience, log=log)
