r"""Full-ranking evaluation of recommenders: Recall@K and NDCG@K (and, where
asked, Precision, Hit, MRR, MAP, item coverage and average popularity) over
all items, with the items a user already has masked out; and, flagged as
not comparable with it, sampled ranking (one positive against sampled
negatives)."""
from typing import Any, Callable, Dict, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.metrics import (
    LinkPredAveragePopularity,
    LinkPredCoverage,
    LinkPredHitRatio,
    LinkPredMAP,
    LinkPredMetricCollection,
    LinkPredMRR,
    LinkPredNDCG,
    LinkPredPrecision,
    LinkPredRecall,
)

from diffkg_pyg.csr import gather_rows, to_csr
from diffkg_pyg.distributed import all_reduce_sum, shard

__all__ = ['RankingEvaluator', 'SampledRankingEvaluator',
           'protocol_evaluators', 'evaluation_record', 'METRICS',
           'SAMPLED_METRICS', 'SAMPLERS', 'ACTIVITY_BUCKETS',
           'activity_buckets']

#: The metrics :class:`RankingEvaluator` computes, by name: means over the
#: users with held-out items, then the two of the lists themselves.
METRICS = ('recall', 'ndcg', 'precision', 'hit', 'mrr', 'map', 'coverage',
           'popularity')
_USER_METRICS = {'recall': LinkPredRecall, 'ndcg': LinkPredNDCG,
                 'precision': LinkPredPrecision, 'hit': LinkPredHitRatio,
                 'mrr': LinkPredMRR, 'map': LinkPredMAP}

#: User-activity buckets: (label, fewest, most) train interactions, the
#: coldest first.
ACTIVITY_BUCKETS = (('0', 0, 0), ('1-5', 1, 5), ('6-10', 6, 10),
                    ('11-20', 11, 20), ('21-50', 21, 50),
                    ('51+', 51, None))


def activity_buckets(train_edge_index: Tensor, num_users: int
                     ) -> Dict[str, Tensor]:
    r"""The users of every non-empty bucket of :data:`ACTIVITY_BUCKETS`
    (by their number of train interactions), the coldest first."""
    count = torch.bincount(train_edge_index[0].cpu(), minlength=num_users)
    out = {}
    for label, low, high in ACTIVITY_BUCKETS:
        mask = count >= low
        if high is not None:
            mask &= count <= high
        if bool(mask.any()):
            out[label] = torch.nonzero(mask).view(-1)
    return out


class RankingEvaluator:
    r"""Full-ranking Recall@K and NDCG@K of a recommender against held-out
    interactions, as defined in the DiffKG paper (and used by LightGCN, KGAT
    and KGIN): for every user :math:`u` with held-out items :math:`T_u`, all
    items are ranked except those in the user's excluded (already known)
    interactions, and with :math:`\mathrm{top}_K(u)` the :math:`K` best,

    .. math::
        \mathrm{Recall@}K(u) &= \frac{|\mathrm{top}_K(u) \cap T_u|}{|T_u|}

        \mathrm{NDCG@}K(u) &= \frac{\sum_{r=1}^{K}
        \mathbb{1}[\mathrm{top}_K(u)_r \in T_u] / \log_2(r + 1)}
        {\sum_{r=1}^{\min(|T_u|, K)} 1 / \log_2(r + 1)},

    both averaged over the users with :math:`|T_u| > 0` (a cut-off larger
    than the number of items ranks them all). Where asked (:obj:`metrics`),
    also, with :math:`h_r = \mathbb{1}[\mathrm{top}_K(u)_r \in T_u]`,

    .. math::
        \mathrm{Precision@}K(u) &= \frac{1}{K} \sum_{r=1}^{K} h_r, \qquad
        \mathrm{Hit@}K(u) = \max_{r \le K} h_r, \qquad
        \mathrm{MRR@}K(u) = \max_{r \le K} \frac{h_r}{r}

        \mathrm{MAP@}K(u) &= \frac{1}{\min(|T_u|, K)} \sum_{r=1}^{K} h_r
        \frac{1}{r} \sum_{j=1}^{r} h_j,

    averaged likewise, and of the lists of those users: the item coverage
    (the fraction of all items in at least one :math:`\mathrm{top}_K(u)`) and
    the average popularity (the mean over users of the mean number of train
    interactions of the items of :math:`\mathrm{top}_K(u)`; the train pairs
    are the first of :obj:`exclude_edge_index`).

    The counting is done by PyG's metrics
    (:class:`~torch_geometric.metrics.LinkPredRecall`,
    :class:`~torch_geometric.metrics.LinkPredNDCG`,
    :class:`~torch_geometric.metrics.LinkPredPrecision`,
    :class:`~torch_geometric.metrics.LinkPredHitRatio`,
    :class:`~torch_geometric.metrics.LinkPredMRR`,
    :class:`~torch_geometric.metrics.LinkPredMAP`,
    :class:`~torch_geometric.metrics.LinkPredCoverage`,
    :class:`~torch_geometric.metrics.LinkPredAveragePopularity`), which
    compute exactly these definitions (checked against a literal per-user
    implementation in the tests); this class adds the masking and the
    batching over users.

    Args:
        target_edge_index (torch.Tensor): The held-out user-item pairs,
            shape :obj:`[2, num_targets]`.
        exclude_edge_index (torch.Tensor or list of torch.Tensor): The
            user-item pairs to mask out of the ranking (train interactions,
            and on test also the validation ones), each :obj:`[2, *]`.
        num_users (int): The number of users.
        num_items (int): The number of items.
        ks (list of int, optional): The cut-offs :math:`K`.
            (default: :obj:`(10, 20, 40)`)
        batch_size (int, optional): Users scored at once.
            (default: :obj:`1024`)
        metrics (list of str, optional): Which of :data:`METRICS`, each at
            every cut-off. (default: :obj:`('recall', 'ndcg')`)
    """
    def __init__(
        self,
        target_edge_index: Tensor,
        exclude_edge_index: Sequence[Tensor],
        num_users: int,
        num_items: int,
        ks: Sequence[int] = (10, 20, 40),
        batch_size: int = 1024,
        metrics: Sequence[str] = ('recall', 'ndcg'),
    ) -> None:
        if len(ks) == 0 or min(ks) < 1:
            raise ValueError(f"'ks' must be positive cut-offs (got {ks})")
        unknown = [m for m in metrics if m not in METRICS]
        if unknown or not metrics:
            raise ValueError(f"'metrics' must be some of {', '.join(METRICS)}"
                             f' (got {", ".join(metrics) or "none"})')
        self.metrics = list(dict.fromkeys(metrics))
        if batch_size < 1:
            raise ValueError(f"'batch_size' must be >= 1 (got {batch_size})")
        if isinstance(exclude_edge_index, Tensor):
            exclude_edge_index = [exclude_edge_index]
        self.ks = sorted(set(int(k) for k in ks))
        self.batch_size = batch_size
        self.num_users = num_users
        self.num_items = num_items
        self.target_ptr, self.target_col = to_csr(target_edge_index,
                                                  num_users)
        self.exclude_ptr, self.exclude_col = to_csr(
            torch.cat(list(exclude_edge_index), dim=1), num_users)
        self.users = torch.unique(target_edge_index[0])
        self.popularity = torch.bincount(  # Only where it is asked for.
            exclude_edge_index[0][1].cpu(), minlength=num_items).float() \
            if 'popularity' in self.metrics else None

    @torch.no_grad()
    def __call__(self, score_users: Callable[[Tensor], Tensor],
                 sharded: bool = False,
                 users: Optional[Tensor] = None) -> Dict[str, float]:
        r"""Evaluates a recommender.

        Args:
            score_users (callable): Maps user indices :obj:`[batch_size]` to
                the scores of all items, :obj:`[batch_size, num_items]`.
            sharded (bool, optional): In a process group, rank only this
                process's contiguous share of the users and sum the metric
                sums and user counts over the processes (every process
                must call it; every one returns the same metrics).
                (default: :obj:`False`)
            users (torch.Tensor, optional): Evaluate only these users
                (those of them with held-out items). (default: all)

        Returns:
            A dictionary mapping :obj:`'recall@K'` and :obj:`'ndcg@K'` to
            floats.
        """
        names = [f'{m}@{k}' for m in self.metrics for k in self.ks]
        metrics = LinkPredMetricCollection(
            [self._metric(m, k) for m in self.metrics for k in self.ks])
        all_users = self.users
        if users is not None:
            all_users = all_users[torch.isin(all_users, users.to(
                all_users.device))]
        all_users = shard(all_users)[0] if sharded else all_users
        for start in range(0, all_users.numel(), self.batch_size):
            users = all_users[start:start + self.batch_size]
            scores = score_users(users)
            device = scores.device
            metrics = metrics.to(device)
            shape = (users.numel(), self.num_items)
            if scores.shape != shape:
                raise ValueError(f'expected scores of shape {shape}, got '
                                 f'{tuple(scores.shape)}')
            scores = scores.float().clone()
            row, col = gather_rows(self.exclude_ptr, self.exclude_col, users)
            scores[row.to(device), col.to(device)] = float('-inf')
            # A cut-off beyond the item count ranks every item:
            k = min(max(self.ks), self.num_items)
            top = scores.topk(k, dim=1).indices
            row, col = gather_rows(self.target_ptr, self.target_col, users)
            metrics.update(top, torch.stack([row, col]).to(device))
        # Each metric's sum over users and its user count (summed over the
        # processes when sharded), divided as LinkPredMetric.compute()
        # divides (read directly: with torchmetrics installed, compute()
        # would sum over the processes itself, and without, not at all).
        # Coverage: the items of any list (over the processes too).
        parts = [m.mask.float() if isinstance(m, LinkPredCoverage) else
                 torch.stack([m.accum.float(), m.total.float()])
                 for m in metrics.values()]
        flat = torch.cat(parts)
        if sharded:
            all_reduce_sum(flat)
        out, start = {}, 0
        for name, part in zip(names, parts):
            value = flat[start:start + part.numel()]
            start += part.numel()
            if name.startswith('coverage@'):
                out[name] = float((value > 0).float().mean())
            else:  # (In float32, as LinkPredMetric.compute() divides.)
                accum, total = value
                out[name] = float(accum / total) if total > 0 else 0.0
        return out

    def _metric(self, name: str, k: int):
        if name == 'coverage':
            return LinkPredCoverage(k, self.num_items)
        if name == 'popularity':
            return LinkPredAveragePopularity(k, self.popularity)
        return _USER_METRICS[name](k)

    def count(self, users: Tensor) -> int:
        r"""How many of :obj:`users` have held-out items."""
        return int(torch.isin(self.users, users.to(self.users.device))
                   .sum())

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_users={self.users.numel()}, '
                f'num_items={self.num_items}, ks={self.ks})')


#: The metrics of :class:`SampledRankingEvaluator` (one positive per trial:
#: coverage and popularity are about full lists, so not among them).
SAMPLED_METRICS = ('recall', 'ndcg', 'precision', 'hit', 'mrr', 'map')

#: How :class:`SampledRankingEvaluator` draws its negatives.
SAMPLERS = ('uniform', 'popularity')


class SampledRankingEvaluator:
    r"""Sampled ranking, as some papers evaluate (NCF, and RecBole's
    ``uni100``/``pop100``): every held-out pair :math:`(u, i)` is a trial in
    which :math:`i` is ranked against :math:`N` negatives, items :math:`u`
    has no known interaction with, drawn with replacement uniformly or in
    proportion to their train popularity. With :math:`r` the rank of
    :math:`i` among the :math:`N + 1` (ties count against it: :math:`r = 1
    + |\{j : s_{uj} \ge s_{ui}\}|`),

    .. math::
        \mathrm{Hit@}K = \mathrm{Recall@}K = \mathbb{1}[r \le K], \quad
        \mathrm{NDCG@}K = \frac{\mathbb{1}[r \le K]}{\log_2(r + 1)}, \quad
        \mathrm{MRR@}K = \mathrm{MAP@}K = \frac{\mathbb{1}[r \le K]}{r},
        \quad \mathrm{Precision@}K = \frac{\mathbb{1}[r \le K]}{K},

    averaged over each user's trials, then over users. **These numbers are
    not comparable with full ranking** (:class:`RankingEvaluator`, the
    package's protocol and the DiffKG paper's), nor across :math:`N` or
    samplers: sampled metrics can even order models differently (Krichene
    and Rendle, `On Sampled Metrics for Item Recommendation
    <https://arxiv.org/abs/1912.02263>`_, KDD 2020). The negatives are drawn
    once, from :obj:`seed`, so every epoch and every model meets the same
    ones.

    Args:
        target_edge_index (torch.Tensor): The held-out pairs,
            :obj:`[2, num_targets]`.
        exclude_edge_index (torch.Tensor or list of torch.Tensor): The known
            pairs (never negatives; the first is the train pairs, whose item
            counts are the popularity).
        num_users (int): The number of users.
        num_items (int): The number of items.
        num_negatives (int, optional): :math:`N`. (default: :obj:`100`)
        sampler (str, optional): :obj:`'uniform'` or :obj:`'popularity'`.
            (default: :obj:`'uniform'`)
        ks (list of int, optional): The cut-offs. (default: :obj:`(10, 20,
            40)`)
        batch_size (int, optional): Users scored at once.
            (default: :obj:`1024`)
        metrics (list of str, optional): Which of :data:`SAMPLED_METRICS`.
            (default: :obj:`('recall', 'ndcg')`)
        seed (int, optional): Seed of the negatives. (default: :obj:`0`)
    """
    def __init__(self, target_edge_index: Tensor,
                 exclude_edge_index: Sequence[Tensor], num_users: int,
                 num_items: int, num_negatives: int = 100,
                 sampler: str = 'uniform', ks: Sequence[int] = (10, 20, 40),
                 batch_size: int = 1024,
                 metrics: Sequence[str] = ('recall', 'ndcg'),
                 seed: int = 0) -> None:
        unknown = [m for m in metrics if m not in SAMPLED_METRICS]
        if unknown or not metrics:
            raise ValueError(f"sampled ranking computes "
                             f"{', '.join(SAMPLED_METRICS)} (got "
                             f"{', '.join(metrics) or 'none'})")
        if sampler not in SAMPLERS:
            raise ValueError(f"'sampler' must be one of {', '.join(SAMPLERS)}"
                             f" (got {sampler!r})")
        if num_negatives < 1 or batch_size < 1 or not ks or min(ks) < 1:
            raise ValueError(f'num_negatives ({num_negatives}), batch_size '
                             f'({batch_size}) and ks ({ks}) must be positive')
        if isinstance(exclude_edge_index, Tensor):
            exclude_edge_index = [exclude_edge_index]
        self.metrics = list(dict.fromkeys(metrics))
        self.ks = sorted(set(int(k) for k in ks))
        self.batch_size, self.num_items = batch_size, num_items
        target = target_edge_index.cpu()
        order = torch.argsort(target[0] * num_items + target[1])
        self.user, self.positive = target[0][order], target[1][order]
        known = torch.cat([target] + [e.cpu() for e in exclude_edge_index],
                          dim=1)
        known = torch.unique(known[0] * num_items + known[1])
        weights = None
        if sampler == 'popularity':
            weights = torch.bincount(exclude_edge_index[0][1].cpu(),
                                     minlength=num_items).double()
        self.negative, drawn = _draw_negatives(
            self.user, known, num_items, num_negatives, weights,
            torch.Generator().manual_seed(int(seed)))
        #: Trials left out: users with no item to draw a negative from.
        self.num_dropped = int((~drawn).sum())
        self.user, self.positive = self.user[drawn], self.positive[drawn]
        self.negative = self.negative[drawn]
        self.users = torch.unique_consecutive(self.user)
        self.ptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(
            torch.bincount(self.user, minlength=num_users), 0)])

    @torch.no_grad()
    def __call__(self, score_users: Callable[[Tensor], Tensor],
                 sharded: bool = False,
                 users: Optional[Tensor] = None) -> Dict[str, float]:
        r"""Evaluates a recommender (arguments as
        :meth:`RankingEvaluator.__call__`)."""
        all_users = self.users
        if users is not None:
            all_users = all_users[torch.isin(all_users, users.cpu())]
        all_users = shard(all_users)[0] if sharded else all_users
        ks = torch.tensor(self.ks, dtype=torch.float64)
        sums = torch.zeros(len(self.metrics), len(self.ks),
                           dtype=torch.float64)
        for start in range(0, all_users.numel(), self.batch_size):
            users = all_users[start:start + self.batch_size]
            scores = score_users(users).float()
            device = scores.device
            count = self.ptr[users + 1] - self.ptr[users]
            trials = torch.repeat_interleave(self.ptr[users], count) + (
                torch.arange(int(count.sum())) - torch.repeat_interleave(
                    torch.cumsum(count, 0) - count, count))
            row = torch.repeat_interleave(torch.arange(users.numel()),
                                          count).to(device)
            positive = scores[row, self.positive[trials].to(device)]
            negative = scores[row[:, None], self.negative[trials].to(device)]
            rank = 1 + (negative >= positive[:, None]).sum(1).cpu().double()
            within = rank[:, None] <= ks
            values = {'recall': within.double(), 'hit': within.double(),
                      'ndcg': within / torch.log2(rank + 1)[:, None],
                      'mrr': within / rank[:, None],
                      'map': within / rank[:, None],
                      'precision': within / ks}
            weight = (1.0 / count.double()).repeat_interleave(count)
            for m, name in enumerate(self.metrics):
                sums[m] += (values[name] * weight[:, None]).sum(0)
        flat = torch.cat([sums.view(-1), torch.tensor(
            [float(all_users.numel())], dtype=torch.float64)])
        if sharded:
            all_reduce_sum(flat)
        total = float(flat[-1])
        return {f'{name}@{k}': float(flat[m * len(self.ks) + j] / total)
                if total > 0 else 0.0
                for m, name in enumerate(self.metrics)
                for j, k in enumerate(self.ks)}

    def count(self, users: Tensor) -> int:
        r"""How many of :obj:`users` have trials."""
        return int(torch.isin(self.users, users.cpu()).sum())

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_users={self.users.numel()}, '
                f'num_items={self.num_items}, '
                f'num_negatives={self.negative.size(1)}, ks={self.ks})')


def _draw_negatives(user: Tensor, known: Tensor, num_items: int,
                    num_negatives: int, weights: Optional[Tensor],
                    generator: torch.Generator, rounds: int = 200):
    r"""Negatives of every trial (a user each), redrawn where a draw is a
    known pair (:obj:`known`: sorted keys :obj:`user * num_items + item`);
    trials still incomplete after :obj:`rounds` draws are marked."""
    def draw(n: int) -> Tensor:
        if weights is None:
            return torch.randint(num_items, (n,), generator=generator)
        return torch.multinomial(weights, n, replacement=True,
                                 generator=generator)

    def is_known(rows: Tensor, items: Tensor) -> Tensor:
        key = user[rows] * num_items + items
        at = torch.searchsorted(known, key).clamp(max=known.numel() - 1)
        return known[at] == key

    negative = torch.empty(user.numel(), num_negatives, dtype=torch.long)
    if user.numel() == 0 or (weights is not None and weights.sum() == 0):
        return negative, torch.zeros(user.numel(), dtype=torch.bool)
    flat = negative.view(-1)
    todo = torch.arange(flat.numel())
    for _ in range(rounds):
        flat[todo] = draw(todo.numel())
        todo = todo[is_known(todo // num_negatives, flat[todo])]
        if todo.numel() == 0:
            break
    drawn = torch.ones(user.numel(), dtype=torch.bool)
    drawn[todo // num_negatives] = False
    return negative, drawn


def protocol_evaluators(train_edge_index: Tensor, val_edge_index: Tensor,
                        test_edge_index: Tensor, num_users: int,
                        num_items: int, ks: Sequence[int] = (10, 20, 40),
                        batch_size: int = 1024,
                        metrics: Sequence[str] = ('recall', 'ndcg'),
                        num_negatives: Optional[int] = None,
                        sampler: str = 'uniform', seed: int = 0,
                        ) -> Dict[str, Any]:
    r"""The evaluators of the package's protocol, :obj:`'valid'` (the
    validation pairs, the train pairs masked) and :obj:`'test'` (the test
    pairs, the train and validation pairs masked); the arguments as
    :class:`RankingEvaluator`'s, or with :obj:`num_negatives`,
    :class:`SampledRankingEvaluator`'s (not comparable with full
    ranking)."""
    def evaluator(target, exclude, salt):
        if num_negatives is None:
            return RankingEvaluator(target, exclude, num_users, num_items,
                                    ks, batch_size, metrics)
        return SampledRankingEvaluator(target, exclude, num_users,
                                       num_items, num_negatives, sampler,
                                       ks, batch_size, metrics,
                                       seed=seed * 2 + salt)

    return {'valid': evaluator(val_edge_index, [train_edge_index], 0),
            'test': evaluator(test_edge_index,
                              [train_edge_index, val_edge_index], 1)}


def evaluation_record(ks: Sequence[int], metrics: Sequence[str],
                      num_negatives: Optional[int] = None,
                      sampler: str = 'uniform') -> Dict[str, Any]:
    r"""What a result records of its evaluation: :obj:`mode`
    (:obj:`'full'`, or :obj:`'sampled'` with :obj:`negatives`,
    :obj:`sampler` and :obj:`negative_seed`), the cut-offs :obj:`ks` and
    the :obj:`metrics` (Recall and NDCG always among them)."""
    out: Dict[str, Any] = {'mode': 'full', 'ks': sorted(set(ks)),
                           'metrics': list(dict.fromkeys(
                               [*metrics[:1], 'recall', 'ndcg',
                                *metrics[1:]]))}
    if num_negatives is not None:  # (The negatives' seed is 0.)
        out.update(mode='sampled', negatives=num_negatives, sampler=sampler,
                   negative_seed=0)
    return out
