r"""Data preparation as papers describe it: de-duplication, a rating
threshold, k-core filtering of users, items and knowledge-graph entities,
and the test split (the dataset's own, a seeded per-user ratio, a temporal
split per user or global, leave-one-out).

The steps run in this order on all the interactions of a dataset (every
file of its own split together, each row keeping its file):

1. **De-duplication** (:obj:`dedup`): a user-item pair listed more than
   once in a file keeps its first row (:obj:`'first'`) or its latest
   (:obj:`'last'`: the largest timestamp, ties by the later row; the last
   row without timestamps), as RecBole's ``rm_dup_inter`` does.
2. **Rating threshold** (:obj:`min_rating`): interactions rated under it
   are dropped (needs a ``rating`` column).
3. **k-core** (:obj:`user_core`, :obj:`item_core`): users with fewer than
   :obj:`user_core` interactions and items with fewer than
   :obj:`item_core` are dropped, repeatedly, until every remaining user
   and item meets its bound.
4. **Split** (:obj:`split`): :obj:`'own'` keeps the dataset's own files;
   :obj:`'ratio'` sends a seeded :obj:`test_ratio` of each user's
   interactions to test (:func:`~diffkg_pyg.data.validation_mask`);
   :obj:`'temporal-user'` each user's latest :obj:`test_ratio`;
   :obj:`'temporal-global'` the latest :obj:`test_ratio` of all
   interactions (one time cut; test pairs of users with no train pair are
   dropped, as no model can rank for them); :obj:`'leave-one-out'` each
   user's latest interaction (a seeded random one without timestamps).
   Every user keeps at least one train interaction. The validation split
   is then taken from the train interactions the same way (with
   :obj:`val_ratio`; leave-one-out holds out one more per user), except
   for :obj:`'ratio'`, whose validation is the usual seeded hold-out.

The knowledge graph's entity core (:obj:`entity_core`, entities other than
items in fewer triplets are dropped with their triplets, repeatedly) runs
once the items are known (:func:`entity_core_mask`).

Users, items and entities that no longer occur are dropped and the rest
renumbered in their original order; their original ids stay on the graph
(``raw_id``), so outputs keep the dataset's own ids. What was done and how
much it removed is :obj:`data.preparation`, which result files and the
dataset fingerprint record.
"""
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from diffkg_pyg.data.io import DataFormatError
from diffkg_pyg.data.split import validation_mask

__all__ = ['TEST_SPLITS', 'Preparation', 'Interactions', 'PreparedSplit',
           'prepare_interactions', 'k_core_mask', 'entity_core_mask',
           'drop_entities', 'latest_mask', 'format_preparation']

#: The test splits :class:`Preparation` knows.
TEST_SPLITS = ('own', 'ratio', 'temporal-user', 'temporal-global',
               'leave-one-out')


@dataclass(frozen=True)
class Preparation:
    r"""The preparation of a dataset's interactions (module docstring).

    Args:
        split (str, optional): One of :obj:`TEST_SPLITS`; :obj:`None` for the
            dataset's own split where it has one, else :obj:`'ratio'`.
        test_ratio (float, optional): The test fraction of the ratio and
            temporal splits, in :obj:`(0, 1)`. (default: :obj:`0.2`)
        min_rating (float, optional): Drop interactions rated under this.
        user_core (int, optional): The users' k-core bound (:obj:`0`: none).
        item_core (int, optional): The items' k-core bound (:obj:`0`: none).
        entity_core (int, optional): The bound on the triplets of every
            entity other than an item (:obj:`0`: none).
        dedup (str, optional): :obj:`'first'` or :obj:`'last'`.
            (default: :obj:`'first'`)
    """
    split: Optional[str] = None
    test_ratio: float = 0.2
    min_rating: Optional[float] = None
    user_core: int = 0
    item_core: int = 0
    entity_core: int = 0
    dedup: str = 'first'

    def __post_init__(self):
        if self.split is not None and self.split not in TEST_SPLITS:
            raise ValueError(f"unknown split {self.split!r} (one of "
                             f"{', '.join(TEST_SPLITS)})")
        if not 0.0 < self.test_ratio < 1.0:
            raise ValueError(f"'test_ratio' must lie in (0, 1) (got "
                             f"{self.test_ratio})")
        for name in ('user_core', 'item_core', 'entity_core'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or \
                    value < 0:
                raise ValueError(f"'{name}' must be a non-negative integer "
                                 f"(got {value!r})")
        if self.min_rating is not None and not np.isfinite(self.min_rating):
            raise ValueError(f"'min_rating' must be finite (got "
                             f"{self.min_rating})")
        if self.dedup not in ('first', 'last'):
            raise ValueError(f"'dedup' must be 'first' or 'last' (got "
                             f"{self.dedup!r})")

    @property
    def is_default(self) -> bool:
        r"""Whether this is what every layout does without being asked."""
        return self == Preparation(test_ratio=self.test_ratio)

    def options(self) -> Dict[str, Any]:
        r"""The options that differ from the defaults (the split always)."""
        default = asdict(Preparation())
        return {k: v for k, v in asdict(self).items()
                if v != default[k] or k == 'split'}


@dataclass
class Interactions:
    r"""All the interactions of a dataset, one row each (every array of
    shape :obj:`[num_rows]`).

    Attributes:
        user (numpy.ndarray): User ids.
        item (numpy.ndarray): Item ids.
        part (numpy.ndarray): The file of each row (an index into
            :obj:`paths`: train, [validation,] test for an own split).
        line (numpy.ndarray): The row's 1-based line in its file.
        paths (List[str]): The files.
        rating (numpy.ndarray, optional): Ratings, where every file has them.
        time (numpy.ndarray, optional): Timestamps, where every file has
            them.
    """
    user: np.ndarray
    item: np.ndarray
    part: np.ndarray
    line: np.ndarray
    paths: List[str]
    rating: Optional[np.ndarray] = None
    time: Optional[np.ndarray] = None


@dataclass
class PreparedSplit:
    r"""Rows of :class:`Interactions` (indices, in file order) for each
    split; :obj:`valid` is :obj:`None` where the validation split is the
    usual seeded hold-out of :obj:`train`. :obj:`record` is what was done
    and removed."""
    train: np.ndarray
    valid: Optional[np.ndarray]
    test: np.ndarray
    record: Dict[str, Any]


def _missing(inter: Interactions, column: str, why: str) -> DataFormatError:
    return DataFormatError(inter.paths[0], 1, f'has no {column!r} column, '
                           f'which {why} needs')


def _dedup(inter: Interactions, rows: np.ndarray, keep: str,
           merged: bool) -> np.ndarray:
    num_items = int(inter.item.max(initial=-1)) + 1
    part = np.zeros_like(rows) if merged else inter.part[rows]
    key = (part * (int(inter.user.max(initial=-1)) + 1) +
           inter.user[rows]) * num_items + inter.item[rows]
    if keep == 'first':
        _, first = np.unique(key, return_index=True)
        return rows[np.sort(first)]
    # The latest row of every pair: sort by (pair, time, row), take the end.
    time = inter.time[rows] if inter.time is not None else \
        np.zeros(rows.size)
    order = np.lexsort((rows, time, key))
    last = np.r_[key[order][1:] != key[order][:-1], True]
    return np.sort(rows[order[last]])


def k_core_mask(user: np.ndarray, item: np.ndarray, user_core: int,
                item_core: int) -> np.ndarray:
    r"""The rows kept by iterated k-core filtering: every remaining user has
    at least :obj:`user_core` rows and every remaining item at least
    :obj:`item_core`."""
    keep = np.ones(user.size, dtype=bool)
    while True:
        users = np.bincount(user[keep], minlength=int(user.max(
            initial=-1)) + 1)
        items = np.bincount(item[keep], minlength=int(item.max(
            initial=-1)) + 1)
        drop = keep & ((users[user] < user_core) | (items[item] < item_core))
        if not drop.any():
            return keep
        keep &= ~drop


def entity_core_mask(head: np.ndarray, tail: np.ndarray, num_items: int,
                     entity_core: int) -> np.ndarray:
    r"""The triplets kept when every entity other than an item (ids from
    :obj:`num_items` on) must lie in at least :obj:`entity_core` of them,
    repeatedly (an entity's triplets count it once per end)."""
    keep = np.ones(head.size, dtype=bool)
    size = int(max(head.max(initial=-1), tail.max(initial=-1))) + 1
    while True:
        count = np.bincount(np.concatenate([head[keep], tail[keep]]),
                            minlength=size)
        weak = (count < entity_core) & (np.arange(size) >= num_items)
        drop = keep & (weak[head] | weak[tail])
        if not drop.any():
            return keep
        keep &= ~drop


def latest_mask(user: np.ndarray, key: np.ndarray,
                count: np.ndarray) -> np.ndarray:
    r"""Marks the :obj:`count[u]` rows of largest :obj:`key` (ties by the
    later row) of every user :obj:`u` (:obj:`count` indexed by user)."""
    order = np.lexsort((np.arange(user.size), key, user))
    sorted_user = user[order]
    _, start, size = np.unique(sorted_user, return_index=True,
                               return_counts=True)
    from_end = np.repeat(start + size, size) - np.arange(user.size) - 1
    mask = np.zeros(user.size, dtype=bool)
    mask[order] = from_end < count[sorted_user]
    return mask


def _per_user(user: np.ndarray, ratio: float, num_users: int,
              one: bool = False) -> np.ndarray:
    # How many rows of each user go to the held-out side (at least one
    # stays behind).
    n = np.bincount(user, minlength=num_users)
    want = np.ones_like(n) if one else \
        np.floor(ratio * n + 0.5).astype(np.int64)
    return np.minimum(want, np.maximum(n - 1, 0))


def _hold_out(inter: Interactions, rows: np.ndarray, split: str,
              ratio: float, seed) -> Tuple[np.ndarray, np.ndarray]:
    r"""The held-out side of a split and the rows dropped (both masks over
    :obj:`rows`; only the global temporal split drops: the held-out rows
    of users left with no other row)."""
    user = inter.user[rows]
    none = np.zeros(rows.size, dtype=bool)
    if split == 'ratio':
        return validation_mask(user, ratio, seed), none
    if inter.time is not None:
        key = inter.time[rows]
    else:  # Leave-one-out without timestamps: a seeded random order.
        key = np.random.default_rng(seed).random(rows.size)
    num_users = int(inter.user.max(initial=-1)) + 1
    if split != 'temporal-global':
        count = _per_user(user, ratio, num_users,
                          one=split == 'leave-one-out')
        return latest_mask(user, key, count), none
    held = np.zeros(rows.size, dtype=bool)
    count = int(np.floor(ratio * rows.size + 0.5))
    held[np.lexsort((rows, key))[rows.size - count:]] = True
    has_rest = np.zeros(num_users, dtype=bool)
    has_rest[user[~held]] = True
    cold = held & ~has_rest[user]
    return held & ~cold, cold


def prepare_interactions(inter: Interactions, preparation: Preparation,
                         val_ratio: float = 0.1,
                         seed: int = 0) -> PreparedSplit:
    r"""Prepares :obj:`inter` (see the module docstring).

    Args:
        inter (Interactions): Every row of every file.
        preparation (Preparation): What to do.
        val_ratio (float, optional): The validation fraction of the train
            rows, for the temporal splits (leave-one-out holds out one row
            per user; :obj:`'own'` and :obj:`'ratio'` leave the validation
            to :func:`~diffkg_pyg.data.build_hetero_data`, which holds out
            this fraction by seed, unless the dataset has its own
            validation file). (default: :obj:`0.1`)
        seed (int, optional): Seed of the random splits. (default: :obj:`0`)
    """
    p = preparation
    num_parts = len(inter.paths)
    split = p.split or ('own' if num_parts > 1 else 'ratio')
    if split == 'own' and num_parts == 1:
        raise ValueError(f"split 'own' needs the dataset's own train and "
                         f"test files; {inter.paths[0]} is the only one")
    if split in ('temporal-user', 'temporal-global') and inter.time is None:
        raise _missing(inter, 'timestamp', f'the {split} split')
    if p.min_rating is not None and inter.rating is None:
        raise _missing(inter, 'rating', 'a rating threshold')
    record: Dict[str, Any] = dict(p.options(), split=split)
    rows = np.arange(inter.user.size)
    kept = _dedup(inter, rows, p.dedup, merged=split != 'own')
    removed = {'duplicates': int(rows.size - kept.size)}
    rows = kept
    if p.min_rating is not None:
        below = inter.rating[rows] < p.min_rating
        removed['under_min_rating'] = int(below.sum())
        rows = rows[~below]
    if p.user_core or p.item_core:
        keep = k_core_mask(inter.user[rows], inter.item[rows], p.user_core,
                           p.item_core)
        removed['k_core'] = int((~keep).sum())
        rows = rows[keep]
    if rows.size == 0:
        raise ValueError(f'the preparation ({record}) leaves no '
                         f'interaction of {inter.paths[0]}')
    valid = None
    if split == 'own':
        part = inter.part[rows]
        train, test = rows[part == 0], rows[part == num_parts - 1]
        if num_parts == 3:
            valid = rows[part == 1]
    else:
        if split != 'ratio':
            record['order'] = 'timestamp' if inter.time is not None \
                else 'random'
        held, cold = _hold_out(inter, rows, split, p.test_ratio,
                               np.random.SeedSequence([seed, 1]))
        train, test = rows[~held & ~cold], rows[held]
        dropped = int(cold.sum())
        if split != 'ratio':
            held, cold = _hold_out(inter, train, split, val_ratio,
                                   np.random.SeedSequence([seed, 2]))
            valid, train = train[held], train[~held & ~cold]
            dropped += int(cold.sum())
        if split == 'temporal-global':
            removed['no_earlier_interaction'] = dropped
    record['removed'] = removed
    return PreparedSplit(np.sort(train), None if valid is None else
                         np.sort(valid), np.sort(test), record)


def drop_entities(ids: np.ndarray, keep: np.ndarray, names: List[str],
                  num_items: int) -> Tuple[np.ndarray, List[str]]:
    r"""Renumbers the entities after :func:`entity_core_mask`: the items
    and the other entities that the kept triplets still name, in their
    order. :obj:`ids` holds the triplets' heads then tails; returns the
    new ids (of every triplet, kept or not) and names."""
    half = keep.size
    used = np.zeros(len(names), dtype=bool)
    used[:num_items] = True
    used[ids[:half][keep]] = True
    used[ids[half:][keep]] = True
    return (np.cumsum(used) - 1)[ids], [n for n, u in zip(names, used)
                                        if u]


_REMOVED = {
    'duplicates': 'duplicate rows',
    'under_min_rating': 'rated under {min_rating:g}',
    'k_core': 'by the k-core',
    'entity_core_triplets': 'triplets by the entity core',
    'no_earlier_interaction': 'held-out rows of users with no earlier one',
}


def format_preparation(record: Dict[str, Any]) -> str:
    r"""Two lines on :obj:`data.preparation`: what was asked for and what
    it removed."""
    asked = ', '.join(f'{k.replace("_", " ")} {v}' for k, v in
                      record.items() if k != 'removed')
    removed = ', '.join(
        f'{n:,} ' + _REMOVED[k].format(**record)
        for k, n in record['removed'].items())
    return f'preparation: {asked}\nremoved: {removed or "nothing"}'
