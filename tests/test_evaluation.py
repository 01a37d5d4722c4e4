import math

import numpy as np
import pytest
import torch

from diffkg_pyg.csr import gather_rows, to_csr
from diffkg_pyg.evaluation import RankingEvaluator, SampledRankingEvaluator


def brute_force(scores, target, exclude, ks, metrics=('recall', 'ndcg')):
    r"""Per-user reference implementation of every metric of
    :data:`~diffkg_pyg.evaluation.METRICS` (the popularity of an item: its
    count in :obj:`exclude`, the train pairs here)."""
    scores = scores.numpy().astype(np.float64)
    targets, excluded = {}, {}
    for u, i in target.t().tolist():
        targets.setdefault(u, set()).add(i)
    for u, i in exclude.t().tolist():
        excluded.setdefault(u, set()).add(i)
    popularity = np.bincount(exclude[1].numpy(), minlength=scores.shape[1])
    out = {f'{m}@{k}': [] for m in metrics for k in ks}
    listed = {k: set() for k in ks}
    for u, relevant in targets.items():
        row = scores[u].copy()
        for i in excluded.get(u, ()):
            row[i] = -np.inf
        ranking = np.argsort(-row, kind='stable')
        for k in ks:
            hits = [int(i) in relevant for i in ranking[:k]]
            dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
            idcg = sum(1 / math.log2(r + 2)
                       for r in range(min(len(relevant), k)))
            first = next((r for r, h in enumerate(hits, 1) if h), None)
            precision_at = [sum(hits[:r]) / r for r in range(1, k + 1)]
            literal = {
                'recall': sum(hits) / len(relevant), 'ndcg': dcg / idcg,
                'precision': sum(hits) / k, 'hit': float(any(hits)),
                'mrr': 0.0 if first is None else 1 / first,
                'map': sum(p for p, h in zip(precision_at, hits) if h) /
                min(len(relevant), k),
                'popularity': float(np.mean(popularity[ranking[:k]]))}
            listed[k] |= set(ranking[:k].tolist())
            for m in metrics:
                if m != 'coverage':
                    out[f'{m}@{k}'].append(literal[m])
    for k in ks:
        if 'coverage' in metrics:
            out[f'coverage@{k}'] = [len(listed[k]) / scores.shape[1]]
    return {key: float(np.mean(value)) for key, value in out.items()}


ALL = ('recall', 'ndcg', 'precision', 'hit', 'mrr', 'map', 'coverage',
       'popularity')


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('batch_size', [1, 7, 1024])
@pytest.mark.parametrize('metrics', [('recall', 'ndcg'), ALL])
def test_evaluator_matches_brute_force(seed, batch_size, metrics):
    gen = torch.Generator().manual_seed(seed)
    num_users, num_items = 40, 60
    target = torch.stack([torch.randint(num_users, (150, ), generator=gen),
                          torch.randint(num_items, (150, ), generator=gen)])
    target = torch.unique(target, dim=1)
    exclude = torch.stack([torch.randint(num_users, (400, ), generator=gen),
                           torch.randint(num_items, (400, ), generator=gen)])
    exclude = torch.unique(exclude, dim=1)
    # Held-out pairs are never known ones (as in a proper split):
    known = set(map(tuple, exclude.t().tolist()))
    keep = [tuple(p) not in known for p in target.t().tolist()]
    target = target[:, torch.tensor(keep)]
    scores = torch.randn(num_users, num_items, generator=gen)
    ks = (5, 10, 20)
    evaluator = RankingEvaluator(target, [exclude], num_users, num_items, ks,
                                 batch_size, metrics)
    out = evaluator(lambda users: scores[users])
    expected = brute_force(scores, target, exclude, ks, metrics)
    assert out.keys() == expected.keys()
    for key in expected:
        assert out[key] == pytest.approx(expected[key], rel=1e-6,
                                         abs=1e-6), key


def test_evaluator_hand_computed():
    # User 0: test items {1, 3}; item 0 is a train item (masked).
    # Ranking of the unmasked items by score: 2, 3, 4, 1.
    scores = torch.tensor([[9.0, 1.0, 8.0, 7.0, 6.0],
                           [0.0, 1.0, 2.0, 3.0, 4.0]])
    target = torch.tensor([[0, 0, 1], [1, 3, 4]])
    exclude = torch.tensor([[0], [0]])
    evaluator = RankingEvaluator(target, exclude, 2, 5, ks=(1, 2, 4))
    out = evaluator(lambda users: scores[users])
    # User 0: hits at ranks 2 and 4. User 1: item 4 at rank 1.
    assert out['recall@1'] == pytest.approx((0 + 1) / 2)
    assert out['recall@2'] == pytest.approx((0.5 + 1) / 2)
    assert out['recall@4'] == pytest.approx((1 + 1) / 2)
    ndcg2_user0 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert out['ndcg@2'] == pytest.approx((ndcg2_user0 + 1) / 2)
    ndcg4_user0 = ((1 / math.log2(3) + 1 / math.log2(5)) /
                   (1 + 1 / math.log2(3)))
    assert out['ndcg@4'] == pytest.approx((ndcg4_user0 + 1) / 2)
    assert out['ndcg@1'] == pytest.approx(0.5)


def test_evaluator_ignores_users_without_targets():
    scores = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    target = torch.tensor([[2], [1]])
    evaluator = RankingEvaluator(target, torch.empty(2, 0, dtype=torch.long),
                                 3, 2, ks=(1, ))
    out = evaluator(lambda users: scores[users])
    assert out == {'recall@1': 1.0, 'ndcg@1': 1.0}


@pytest.mark.parametrize('kwargs,match', [
    (dict(ks=(0, )), 'positive cut-offs'),
    (dict(ks=(5, ), batch_size=0), "'batch_size' must be >= 1"),
    (dict(metrics=('recall', 'auc')), "'metrics' must be some of recall"),
    (dict(metrics=()), 'got none'),
])
def test_evaluator_bad_arguments(kwargs, match):
    edge_index = torch.tensor([[0], [1]])
    with pytest.raises(ValueError, match=match):
        RankingEvaluator(edge_index, edge_index, 2, 10, **kwargs)


def test_evaluator_cut_off_beyond_items():
    scores = torch.tensor([[0.0, 1.0, 2.0]])
    target = torch.tensor([[0, 0], [0, 1]])
    out = RankingEvaluator(target, torch.tensor([[0], [2]]), 1, 3,
                           ks=(2, 50))(lambda users: scores[users])
    assert out['recall@50'] == out['recall@2'] == 1.0
    assert out['ndcg@50'] == out['ndcg@2'] == 1.0


def test_evaluator_checks_score_shape():
    edge_index = torch.tensor([[0], [1]])
    evaluator = RankingEvaluator(edge_index, edge_index, 2, 10, ks=(1, ))
    with pytest.raises(ValueError, match='expected scores of shape'):
        evaluator(lambda users: torch.zeros(users.numel(), 9))


def test_csr_gather():
    edge_index = torch.tensor([[2, 0, 2, 1, 2], [5, 6, 7, 8, 9]])
    ptr, col = to_csr(edge_index, 4)
    assert ptr.tolist() == [0, 1, 2, 5, 5]
    row, out = gather_rows(ptr, col, torch.tensor([2, 3, 0]))
    assert row.tolist() == [0, 0, 0, 2]
    assert out.tolist() == [5, 7, 9, 6]


def test_activity_buckets_partition_the_users_and_the_metric():
    from diffkg_pyg.evaluation import activity_buckets
    gen = torch.Generator().manual_seed(0)
    num_users, num_items = 40, 30
    # User u has u % 25 train items: every bucket up to 21-50 is used.
    train = torch.tensor([[u, i] for u in range(num_users)
                          for i in range(u % 25)]).t()
    test = torch.tensor([[u, 29 - (u % 5)] for u in range(num_users)]).t()
    buckets = activity_buckets(train, num_users)
    assert list(buckets) == ['0', '1-5', '6-10', '11-20', '21-50']
    assert sorted(torch.cat(list(buckets.values())).tolist()) == \
        list(range(num_users))
    evaluator = RankingEvaluator(test, [train], num_users, num_items,
                                 ks=(5, 20))
    scores = torch.randn(num_users, num_items, generator=gen)
    overall = evaluator(lambda users: scores[users])
    # The user-weighted mean of the buckets' metrics is the overall one:
    parts = {label: (evaluator.count(users),
                     evaluator(lambda u: scores[u], users=users))
             for label, users in buckets.items()}
    for metric, value in overall.items():
        total = sum(n * m[metric] for n, m in parts.values())
        assert total / num_users == pytest.approx(value, abs=1e-6)


SAMPLED = ('recall', 'ndcg', 'precision', 'hit', 'mrr', 'map')


def random_case(seed, num_users=12, num_items=40):
    gen = torch.Generator().manual_seed(seed)
    pairs = torch.stack([torch.randint(num_users, (150,), generator=gen),
                         torch.randint(num_items, (150,), generator=gen)])
    pairs = torch.unique(pairs, dim=1)
    test = torch.rand(pairs.size(1), generator=gen) < 0.3
    return pairs[:, ~test], pairs[:, test], torch.randn(
        num_users, num_items, generator=gen)


@pytest.mark.parametrize('seed', [0, 1])
@pytest.mark.parametrize('sampler', ['uniform', 'popularity'])
@pytest.mark.parametrize('batch_size', [1, 5, 1024])
def test_sampled_ranking_against_a_literal_loop(seed, sampler, batch_size):
    train, test, scores = random_case(seed)
    ev = SampledRankingEvaluator(test, [train], 12, 40, num_negatives=7,
                                 sampler=sampler, ks=(1, 3, 5),
                                 batch_size=batch_size, metrics=SAMPLED,
                                 seed=seed)
    known = {tuple(p) for p in torch.cat([train, test], 1).t().tolist()}
    per_user = {}
    for t, (u, i) in enumerate(zip(ev.user.tolist(), ev.positive.tolist())):
        negatives = ev.negative[t].tolist()
        assert not any((u, j) in known for j in negatives)
        rank = 1 + sum(bool(scores[u, j] >= scores[u, i]) for j in negatives)
        values = {}
        for k in (1, 3, 5):
            hit = float(rank <= k)
            values.update({f'recall@{k}': hit, f'hit@{k}': hit,
                           f'precision@{k}': hit / k,
                           f'ndcg@{k}': hit / math.log2(rank + 1),
                           f'mrr@{k}': hit / rank, f'map@{k}': hit / rank})
        per_user.setdefault(u, []).append(values)
    want = {key: np.mean([np.mean([v[key] for v in trials])
                          for trials in per_user.values()])
            for key in per_user[next(iter(per_user))][0]}
    got = ev(lambda users: scores[users])
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12)
    assert ev.user.numel() == test.size(1) and ev.num_dropped == 0


def test_sampled_negatives_are_seeded_and_follow_the_sampler():
    # Item popularity 0, 1, 2, ..., 9 (item i in i train pairs).
    train = torch.tensor([[u for i in range(10) for u in range(i)],
                          [i for i in range(10) for _ in range(i)]])
    test = torch.tensor([[20] * 3, [0, 1, 2]])
    args = (test, [train], 21, 10, 2000)
    pop = SampledRankingEvaluator(*args, sampler='popularity', seed=3)
    counts = torch.bincount(pop.negative.view(-1), minlength=10).double()
    assert counts[0] == 0  # Popularity 0: never drawn.
    share = counts[3:] / counts[3:].sum()
    want = torch.arange(3, 10, dtype=torch.float64) / 42
    assert torch.allclose(share, want, atol=0.02)
    assert torch.equal(SampledRankingEvaluator(
        *args, sampler='popularity', seed=3).negative, pop.negative)
    uniform = SampledRankingEvaluator(*args, seed=3)
    assert not torch.equal(uniform.negative, SampledRankingEvaluator(
        *args, seed=4).negative)
    assert set(uniform.negative.view(-1).tolist()) == set(range(3, 10))


def test_a_user_who_knows_every_item_has_no_trial():
    train = torch.tensor([[0, 0, 1], [0, 1, 0]])
    test = torch.tensor([[0, 1], [2, 1]])
    ev = SampledRankingEvaluator(test, [train], 2, 3, num_negatives=2)
    assert ev.num_dropped == 1 and ev.users.tolist() == [1]
    with pytest.raises(ValueError, match='sampled ranking computes'):
        SampledRankingEvaluator(test, [train], 2, 3, metrics=['coverage'])
