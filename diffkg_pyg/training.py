r"""The training protocol shared by every recommender of the package:
BPR triples with sampled negatives, validation early stopping on
Recall@20 (the test set is never looked at before the best epoch is
restored), and the full-ranking test evaluation.

The models own their maths; this module only drives them.
"""
import copy
import os.path as osp
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.nn.models import LightGCN
from tqdm.auto import tqdm

from diffkg_pyg.checkpoint import (
    fingerprint,
    load_checkpoint,
    rng_state,
    save_atomic,
    set_rng_state,
)
from diffkg_pyg.data.graph import KG, USER_ITEM, bipartite_adjacency
from diffkg_pyg.evaluation import RankingEvaluator, to_csr
from diffkg_pyg.nn.models import DiffKG
from diffkg_pyg.optim import SparseRowAdam

__all__ = [
    'sample_negative_items',
    'FitResult',
    'FitState',
    'fit',
    'train_lightgcn',
    'DiffKGTrainer',
    'TrainingInterrupted',
    'NonFiniteLossError',
    'train_diffkg',
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


CHECKPOINT_FORMAT = 'diffkg_pyg.DiffKGTrainer/1'


class TrainingInterrupted(KeyboardInterrupt):
    r"""Training stopped on Ctrl-C after a checkpoint was written to
    :obj:`path`."""
    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class NonFiniteLossError(FloatingPointError):
    r"""A loss term became NaN or infinite."""


def _check_finite(epoch: int, **terms: Tensor) -> None:
    for name, value in terms.items():
        if not bool(torch.isfinite(value).all()):
            raise NonFiniteLossError(
                f'the {name} loss is {float(value)} in epoch {epoch}; '
                f'training stopped (checkpoints of earlier epochs are kept; '
                f'try a lower learning rate)')


@dataclass
class FitResult:
    r"""The outcome of :func:`fit`: the number of epochs run, the best epoch
    (by validation :obj:`metric`), the wall time, the validation metrics of
    the best epoch, the test metrics of the restored best model, and one
    record per epoch; :obj:`extra` holds model-specific summaries, written
    at the top level by :meth:`to_dict`."""
    epochs_run: int
    best_epoch: int
    seconds: float
    valid: Dict[str, float]
    test: Dict[str, float]
    history: List[Dict[str, float]] = field(default_factory=list)
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict:
        record = asdict(self)
        record.update(record.pop('extra'))
        return record


def _format(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return f'{value:.4f}' if abs(value) >= 1e-3 or value == 0 else \
        f'{value:.3e}'


@dataclass
class FitState:
    r"""The state of :func:`fit` after :obj:`epoch` completed epochs: the
    early-stopping bookkeeping, the history and the training seconds so
    far. Checkpoints store it; :func:`fit` continues from it."""
    epoch: int = 0
    best_value: float = -1.0
    best_epoch: int = 0
    best_valid: Dict[str, float] = field(default_factory=dict)
    best_state: Any = None
    history: List[Dict[str, float]] = field(default_factory=list)
    stopped: bool = False
    seconds: float = 0.0


def fit(
    model: Any,
    train_epoch: Callable[[int], Dict[str, float]],
    score_users: Callable[[], Callable[[Tensor], Tensor]],
    valid_evaluator: RankingEvaluator,
    test_evaluator: RankingEvaluator,
    epochs: int,
    patience: int = 10,
    metric: str = 'recall@20',
    log: Optional[Callable[[str], None]] = None,
    state: Optional[FitState] = None,
    on_epoch_end: Optional[Callable[[FitState], None]] = None,
) -> FitResult:
    r"""Trains with validation early stopping, then tests the best epoch.

    Args:
        model (torch.nn.Module or trainer): What is trained: anything with
            :obj:`train()`, :obj:`eval()`, :obj:`state_dict()` and
            :obj:`load_state_dict()`. Its state is kept for the best epoch
            and restored before testing.
        train_epoch (callable): Runs one training epoch given its 1-based
            number and returns the numbers to log (losses, timings).
        score_users (callable): Called in evaluation mode once per
            evaluation; returns the scoring function of
            :class:`RankingEvaluator`.
        valid_evaluator (RankingEvaluator): Evaluates on validation.
        test_evaluator (RankingEvaluator): Evaluates on test.
        epochs (int): The epoch cap (in total, when resuming).
        patience (int, optional): Stop after this many epochs without a
            better validation :obj:`metric`. (default: :obj:`10`)
        metric (str, optional): The validation metric to select on.
            (default: :obj:`'recall@20'`)
        log (callable, optional): Receives one line per epoch.
        state (FitState, optional): Continue from this state (a resumed
            checkpoint) instead of from scratch.
        on_epoch_end (callable, optional): Called with the state after
            every epoch (checkpointing).
    """
    if epochs < 1:
        raise ValueError(f"'epochs' must be >= 1 (got {epochs})")
    if patience < 1:
        raise ValueError(f"'patience' must be >= 1 (got {patience})")
    log = log or tqdm.write
    state = state or FitState()
    start = time.perf_counter() - state.seconds
    for epoch in range(state.epoch + 1, epochs + 1):
        if state.stopped:
            break
        model.train()
        epoch_start = time.perf_counter()
        record = {'epoch': epoch, **train_epoch(epoch)}
        record['train_seconds'] = time.perf_counter() - epoch_start
        model.eval()
        eval_start = time.perf_counter()
        valid = valid_evaluator(score_users())
        record['eval_seconds'] = time.perf_counter() - eval_start
        if metric not in valid:
            raise ValueError(f"unknown validation metric '{metric}' "
                             f"(available: {sorted(valid)})")
        record.update({f'valid_{k}': v for k, v in valid.items()})
        state.history.append(record)
        state.epoch = epoch
        improved = valid[metric] > state.best_value
        if improved:
            state.best_value, state.best_epoch = valid[metric], epoch
            state.best_valid = valid
            state.best_state = copy.deepcopy(model.state_dict())
        log(' | '.join(
            [f'epoch {epoch:3d}'] +
            [f'{k} {_format(v)}' for k, v in record.items()
             if k != 'epoch' and not k.startswith('valid_')] +
            [f'valid recall@20 {valid.get("recall@20", float("nan")):.4f}',
             f'ndcg@20 {valid.get("ndcg@20", float("nan")):.4f}'] +
            (['best'] if improved else [])))
        state.stopped = epoch - state.best_epoch >= patience
        state.seconds = time.perf_counter() - start
        if on_epoch_end is not None:
            on_epoch_end(state)
        if state.stopped:
            log(f'early stop: no better valid {metric} for {patience} epochs')
    if state.best_state is None:
        raise ValueError(f'nothing to test: the state has no epoch (epochs '
                         f'= {epochs}, epochs already run = {state.epoch})')
    model.load_state_dict(state.best_state)
    model.eval()
    test = test_evaluator(score_users())
    return FitResult(state.epoch, state.best_epoch,
                     time.perf_counter() - start, state.best_valid, test,
                     state.history)


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


class DiffKGTrainer:
    r"""Trains a :class:`~diffkg_pyg.DiffKG` model on a dataset graph under
    the package's protocol (see :func:`fit`).

    Every epoch runs, in order (the method notes, section 4):

    1. **diffusion**: one pass of denoiser steps over every KG head that has
       edges (shuffled, :obj:`batch_size` heads per step), with its own
       optimisers (:class:`torch.optim.Adam` for the dense parameters,
       :class:`~diffkg_pyg.optim.SparseRowAdam`, the update of
       :class:`torch.optim.SparseAdam`, for the entity tables, so a step
       touches only the rows of its support);
    2. **rebuild**: the denoised KG (:meth:`DiffKG.rebuild_kg`);
    3. **recommendation**: one negative item per train interaction, then
       :meth:`DiffKG.loss` steps with :class:`torch.optim.Adam` over the
       recommender's parameters, the two views given by
       :meth:`DiffKG.views` from the sampled original KG (drawn once) and
       the denoised KG.

    Evaluation encodes with the main view's KG. The best epoch's state
    (model and denoised KG) is restored before the test evaluation.

    Args:
        model (DiffKG): The model (moved to :obj:`device`).
        data (HeteroData): A dataset graph (see
            :func:`~diffkg_pyg.data.build_hetero_data`).
        lr (float, optional): Learning rate of both optimisations.
            (default: :obj:`1e-3`)
        batch_size (int, optional): Triples per recommendation step, heads
            per denoiser step and per rebuild chunk. (default: :obj:`1024`)
        seed (int, optional): Seed of all sampling. (default: :obj:`0`)
        max_batches (int, optional): Cap on the steps of every phase per
            epoch (smoke runs).
        ks (list of int, optional): Metric cut-offs.
            (default: :obj:`(10, 20, 40)`)
        eval_batch_size (int, optional): Users scored at once.
            (default: :obj:`1024`)
        device (torch.device, optional): Where to train. (default: CPU)
        checkpoint_dir (str, optional): Write :obj:`last.pt` (every
            :obj:`checkpoint_every` epochs and at the end) and
            :obj:`best.pt` (at every new best epoch) here, atomically.
        checkpoint_every (int, optional): (default: :obj:`1`)
        diffusion (bool, optional): Train the denoiser and rebuild the KG
            every epoch. :obj:`False` is the "without diffusion" ablation:
            the sampled original KG feeds both views. (default: :obj:`True`)

    Checkpoints hold the model, the three optimisers, every random-number
    generator state, the epoch, the early-stopping state, the sampled and
    denoised KGs, the hyper-parameters and the dataset's fingerprint; a run
    resumed from one (:meth:`fit` with :obj:`resume`) continues exactly as
    the uninterrupted run would have on the same device.

    The first Ctrl-C (SIGINT) lets the current epoch finish, writes a
    checkpoint and stops with :class:`TrainingInterrupted`; a second one
    stops at once. A non-finite loss stops training with
    :class:`NonFiniteLossError` (naming the term and the epoch) before any
    checkpoint of that epoch is written.
    """
    def __init__(self, model, data: HeteroData, lr: float = 1e-3,
                 batch_size: int = 1024, seed: int = 0,
                 max_batches: Optional[int] = None,
                 ks: Sequence[int] = (10, 20, 40),
                 eval_batch_size: int = 1024,
                 device: Optional[torch.device] = None,
                 checkpoint_dir: Optional[str] = None,
                 checkpoint_every: int = 1, diffusion: bool = True) -> None:
        if lr <= 0:
            raise ValueError(f"'lr' must be > 0 (got {lr})")
        if batch_size < 1:
            raise ValueError(f"'batch_size' must be >= 1 (got {batch_size})")
        if max_batches is not None and max_batches < 1:
            raise ValueError(
                f"'max_batches' must be >= 1 (got {max_batches})")
        sizes = {'user': (data['user'].num_nodes, model.num_users),
                 'item': (data['item'].num_nodes, model.num_items),
                 'entity': (data['entity'].num_nodes, model.num_entities)}
        if any(given != expected for given, expected in sizes.values()):
            raise ValueError(
                'the model does not fit the data: ' + ', '.join(
                    f'{expected} {name} nodes in the model, {given} in the '
                    f'data' for name, (given, expected) in sizes.items()))
        if checkpoint_every < 1:
            raise ValueError(f"'checkpoint_every' must be >= 1 (got "
                             f"{checkpoint_every})")
        self.device = torch.device(device or 'cpu')
        self.model = model.to(self.device)
        self.batch_size = batch_size
        self.max_batches = max_batches
        self.diffusion = diffusion
        self.settings = {'lr': lr, 'batch_size': batch_size, 'seed': seed,
                         'max_batches': max_batches, 'diffusion': diffusion}
        self.fingerprint = fingerprint(data)
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self._interrupted = False
        self.valid_evaluator, self.test_evaluator = _evaluators(
            data, ks, eval_batch_size, self.device)
        self.generator = torch.Generator(self.device).manual_seed(seed)

        self.train_edge_index = data[USER_ITEM].edge_index.to(self.device)
        self.adj = model.build_adjacency(self.train_edge_index)
        kg = data[KG]
        self.kg = (kg.edge_index.to(self.device),
                   kg.edge_type.to(self.device))
        self.kg_ptr, self.kg_col = to_csr(self.kg[0], model.num_entities)
        degree = self.kg_ptr[1:] - self.kg_ptr[:-1]
        self.heads = torch.nonzero(degree > 0).view(-1)
        self.sampled_kg = model.sample_kg(*self.kg, generator=self.generator)
        self.denoised_kg = self.sampled_kg  # Until the first rebuild.

        self.optimizer = torch.optim.Adam(model.recommender_parameters(),
                                          lr=lr)
        self.denoiser_optimizer = torch.optim.Adam(
            model.denoiser.dense_parameters(), lr=lr)
        self.denoiser_sparse_optimizer = SparseRowAdam(
            model.denoiser.sparse_parameters(), lr=lr)

    def train(self) -> None:
        self.model.train()

    def eval(self) -> None:
        self.model.eval()

    def state_dict(self) -> Dict[str, Any]:
        r"""What evaluation needs: the model and the denoised KG."""
        return {'model': self.model.state_dict(),
                'denoised_kg': self.denoised_kg}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.model.load_state_dict(state['model'])
        self.denoised_kg = state['denoised_kg']

    def _batches(self, index: Tensor) -> List[Tensor]:
        return list(torch.split(index, self.batch_size))[:self.max_batches]

    def train_diffusion(self, epoch: int) -> Dict[str, float]:
        r"""Phase 1: one pass of denoiser steps."""
        model = self.model
        item_user_emb = model.item_user_embedding(self.train_edge_index)
        perm = torch.randperm(self.heads.numel(), generator=self.generator,
                              device=self.device)
        total = torch.zeros(3, device=self.device)
        batches = self._batches(self.heads[perm])
        for heads in tqdm(batches, desc=f'epoch {epoch} diffusion',
                          leave=False, disable=None):
            loss, diff, ckgc = model.diffusion_loss(
                self.kg_ptr, self.kg_col, heads, item_user_emb,
                self.generator)
            _check_finite(epoch, diff=diff, ckgc=ckgc)
            self.denoiser_optimizer.zero_grad()
            self.denoiser_sparse_optimizer.zero_grad()
            loss.backward()
            self.denoiser_optimizer.step()
            self.denoiser_sparse_optimizer.step()
            total += torch.stack([loss, diff, ckgc]).detach()
        total = (total / max(1, len(batches))).tolist()
        return dict(zip(('denoiser_loss', 'diff', 'ckgc'), total))

    def train_recommendation(self, epoch: int) -> Dict[str, float]:
        r"""Phase 3: one pass of recommendation steps."""
        model, num_items = self.model, self.model.num_items
        user, positive = self.train_edge_index
        negative = sample_negative_items(user, self.train_edge_index,
                                         num_items, self.generator)
        perm = torch.randperm(user.numel(), generator=self.generator,
                              device=self.device)
        main_kg, second_kg = model.views(self.sampled_kg, self.denoised_kg)
        total = torch.zeros(4, device=self.device)
        batches = self._batches(perm)
        for batch in tqdm(batches, desc=f'epoch {epoch} recommendation',
                          leave=False, disable=None):
            loss, terms = model.loss(self.adj, main_kg, second_kg,
                                     user[batch], positive[batch],
                                     negative[batch], self.batch_size)
            _check_finite(epoch, **terms)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total += torch.stack([loss.detach(), terms['bpr'], terms['reg'],
                                  terms['ssl']])
        total = (total / max(1, len(batches))).tolist()
        return dict(zip(('loss', 'bpr', 'reg', 'ssl'), total))

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        r"""Runs the three phases; returns every loss term, the number of
        KG edges kept and the seconds of every phase."""
        start = time.perf_counter()
        record = self.train_diffusion(epoch) if self.diffusion else {}
        diffusion_end = time.perf_counter()
        if self.diffusion:
            self.denoised_kg = self.model.rebuild_kg(
                *self.kg, batch_size=self.batch_size,
                generator=self.generator)
        rebuild_end = time.perf_counter()
        record = {**self.train_recommendation(epoch), **record,
                  'kg_edges_kept': int(self.denoised_kg[0].size(1))}
        record['diffusion_seconds'] = diffusion_end - start
        record['rebuild_seconds'] = rebuild_end - diffusion_end
        record['recommendation_seconds'] = time.perf_counter() - rebuild_end
        return record

    def score_users(self) -> Callable[[Tensor], Tensor]:
        r"""The scoring function of the current model (main-view KG)."""
        main_kg, _ = self.model.views(self.sampled_kg, self.denoised_kg)
        with torch.no_grad():
            user_emb, item_emb = self.model.get_embedding(self.adj, *main_kg)
        return lambda users: user_emb[users.to(self.device)] @ item_emb.t()

    def checkpoint(self, state: FitState) -> Dict[str, Any]:
        r"""Everything needed to continue exactly after :obj:`state`."""
        best = state.best_state
        if state.best_epoch == state.epoch:
            best = None  # The current state; not stored twice.
        return {
            'format': CHECKPOINT_FORMAT,
            'arguments': self.model.arguments(),
            'settings': self.settings,
            'fingerprint': self.fingerprint,
            'model': self.model.state_dict(),
            'optimizers': [o.state_dict() for o in self._optimizers()],
            'rng': rng_state(self.generator),
            'sampled_kg': self.sampled_kg,
            'denoised_kg': self.denoised_kg,
            'fit_state': {**state.__dict__, 'best_state': best},
        }

    def load_checkpoint(self, path: str) -> FitState:
        r"""Restores a checkpoint of this model, data and settings (anything
        else raises :class:`ValueError` naming the difference); returns the
        state to continue :func:`fit` from."""
        saved = load_checkpoint(path, self.device)
        if saved.get('format') != CHECKPOINT_FORMAT:
            raise ValueError(f'{path}: not a DiffKG training checkpoint '
                             f'(format {saved.get("format")!r})')
        if saved['fingerprint'] != self.fingerprint:
            raise ValueError(f'{path}: the checkpoint was written for other '
                             f'data (dataset fingerprint '
                             f'{saved["fingerprint"][:12]}..., this data '
                             f'{self.fingerprint[:12]}...)')
        ignored = {'use_compile'}
        mine = {**self.model.arguments(), **self.settings}
        theirs = {**saved['arguments'], **saved['settings']}
        differ = [f'{k}={theirs.get(k)!r} (given {mine.get(k)!r})'
                  for k in sorted(set(mine) | set(theirs))
                  if k not in ignored and mine.get(k) != theirs.get(k)]
        if differ:
            raise ValueError(f'{path}: the checkpoint has other '
                             f'hyper-parameters: {", ".join(differ)}')
        self.model.load_state_dict(saved['model'])
        for optimizer, state in zip(self._optimizers(), saved['optimizers']):
            optimizer.load_state_dict(state)
        set_rng_state(saved['rng'], self.generator)
        self.sampled_kg = tuple(saved['sampled_kg'])
        self.denoised_kg = tuple(saved['denoised_kg'])
        state = FitState(**saved['fit_state'])
        if state.best_state is None:
            state.best_state = copy.deepcopy(self.state_dict())
        return state

    def _optimizers(self):
        return [self.optimizer, self.denoiser_optimizer,
                self.denoiser_sparse_optimizer]

    def _save(self, state: FitState, name: str) -> str:
        path = osp.join(self.checkpoint_dir or '.', name)
        save_atomic(self.checkpoint(state), path)
        return path

    def _on_epoch_end(self, state: FitState, epochs: int) -> None:
        path = None
        if self.checkpoint_dir is not None:
            if state.best_epoch == state.epoch:
                self._save(state, 'best.pt')
            if (state.epoch % self.checkpoint_every == 0 or state.stopped
                    or state.epoch == epochs or self._interrupted):
                path = self._save(state, 'last.pt')
        if self._interrupted:
            path = path or self._save(state, 'diffkg-interrupted.pt')
            raise TrainingInterrupted(
                f'interrupted after epoch {state.epoch}: checkpoint saved '
                f'to {path}; continue with --resume {path}', path)

    def _interrupt(self, signum, frame) -> None:
        if self._interrupted:  # Second Ctrl-C: stop now.
            raise KeyboardInterrupt
        self._interrupted = True
        tqdm.write('interrupt: finishing this epoch, then saving a '
                   'checkpoint (Ctrl-C again to stop at once, losing the '
                   'epoch)')

    def fit(self, epochs: int, patience: int = 10,
            log: Optional[Callable[[str], None]] = None,
            resume: Optional[str] = None) -> FitResult:
        r"""Trains with early stopping (see :func:`fit`), from scratch or
        from the checkpoint :obj:`resume`, up to :obj:`epochs` in total.
        The result's :obj:`extra` holds :obj:`kg_edges_kept` (the restored
        denoised KG) and :obj:`phase_seconds` (totals over the epochs
        run)."""
        state = self.load_checkpoint(resume) if resume else None
        handler = None
        if threading.current_thread() is threading.main_thread():
            handler = signal.signal(signal.SIGINT, self._interrupt)
        try:
            result = fit(self, self.train_epoch, self.score_users,
                         self.valid_evaluator, self.test_evaluator, epochs,
                         patience, log=log, state=state,
                         on_epoch_end=lambda s: self._on_epoch_end(s, epochs))
        finally:
            if handler is not None:
                signal.signal(signal.SIGINT, handler)
            self._interrupted = False
        phases = ('diffusion', 'rebuild', 'recommendation', 'eval')
        result.extra = {
            'kg_edges_kept': int(self.denoised_kg[0].size(1)),
            'phase_seconds': {
                phase: sum(r[f'{phase}_seconds'] for r in result.history)
                for phase in phases
            },
        }
        return result

    def save_model(self, path: str) -> None:
        r"""Saves the model for inference (see :meth:`DiffKG.save`) with the
        main view's KG."""
        main_kg, _ = self.model.views(self.sampled_kg, self.denoised_kg)
        self.model.save(path, self.train_edge_index, *main_kg)


def train_diffkg(
    data: HeteroData,
    lr: float = 1e-3,
    batch_size: int = 1024,
    epochs: int = 200,
    patience: int = 10,
    seed: int = 0,
    max_batches: Optional[int] = None,
    ks: Sequence[int] = (10, 20, 40),
    eval_batch_size: int = 1024,
    device: Optional[torch.device] = None,
    log: Optional[Callable[[str], None]] = None,
    checkpoint_dir: Optional[str] = None,
    checkpoint_every: int = 1,
    resume: Optional[str] = None,
    save_model: Optional[str] = None,
    diffusion: bool = True,
    **kwargs,
) -> FitResult:
    r"""Creates :obj:`DiffKG.from_data(data, **kwargs)` (seeded) and trains
    it with :class:`DiffKGTrainer` (see there for the arguments), from
    scratch or from the checkpoint :obj:`resume`; with :obj:`save_model`,
    the restored best model is saved there for inference
    (:meth:`DiffKG.load`)."""
    torch.manual_seed(seed)
    model = DiffKG.from_data(data, **kwargs)
    trainer = DiffKGTrainer(model, data, lr, batch_size, seed, max_batches,
                            ks, eval_batch_size, device, checkpoint_dir,
                            checkpoint_every, diffusion)
    result = trainer.fit(epochs, patience, log, resume)
    if save_model:
        trainer.save_model(save_model)
    return result
