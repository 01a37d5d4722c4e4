r"""What a saved model gives back, in the dataset's own ids: top-:math:`K`
lists (:func:`write_top_k`), its user and item embeddings
(:func:`write_embeddings`) and its metrics on a dataset's test pairs
(:func:`evaluate_saved`); what ``diffkg-pyg recommend`` and ``diffkg-pyg
evaluate`` run. The ids are the dataset's own (the tokens of RecBole or CSV
files, :func:`~diffkg_pyg.data.raw_ids`) where the model was saved with
them, else the indices."""
import warnings
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from diffkg_pyg.data.graph import USER_ITEM
from diffkg_pyg.data.io import DataFormatError, _read_bytes
from diffkg_pyg.data.tabular import raw_ids
from diffkg_pyg.evaluation import evaluation_record, protocol_evaluators
from diffkg_pyg.files import atomic_write
from diffkg_pyg.train.checkpoint import fingerprint
from diffkg_pyg.train.persistence import Recommender
from diffkg_pyg.train.results import dataset_record

__all__ = ['read_users', 'users_of', 'write_top_k', 'write_embeddings',
           'evaluate_saved']

#: First lines of a user file read as a header, not an id.
_HEADERS = ('user', 'user_id', 'user_id:token')


def read_users(path: str, recommender: Recommender) -> Tensor:
    r"""The users listed in the file :obj:`path` (one of the dataset's own
    user ids per line; blank lines, lines starting with ``#`` and a first
    line ``user``, ``user_id`` or ``user_id:token`` skipped; a user listed
    twice counts once), as indices in the order listed. An id the model
    does not know is a :class:`~diffkg_pyg.data.DataFormatError` naming the
    line."""
    lines = _read_bytes(path).decode('utf-8-sig').splitlines()
    ids, numbers = [], []
    for number, line in enumerate(lines, 1):
        token = line.strip()
        if not token or token.startswith('#') or (
                not ids and token.lower() in _HEADERS):
            continue
        ids.append(token)
        numbers.append(number)
    if not ids:
        raise DataFormatError(path, None, 'lists no user')
    index = recommender.index_of('user', ids)
    for token, number, i in zip(ids, numbers, index):
        if i is None:
            known = ('its dataset\'s user ids' if recommender.raw_ids
                     else f'indices 0..{recommender.sizes.num_users - 1}')
            raise DataFormatError(path, number, f'user {token!r} is not a '
                                  f'user of the model ({known})')
    return torch.tensor(list(dict.fromkeys(index)), dtype=torch.long)


def write_top_k(path: str, recommender: Recommender, users: Tensor,
                k: int = 20, exclude_train: bool = True,
                batch_size: int = 1024, progress: bool = True,
                search: str = 'exact') -> int:
    r"""Writes the top-:obj:`k` items of every user of :obj:`users` (indices
    :obj:`[B]`) to the tab-separated file :obj:`path`, one row per
    recommendation, ``user``, ``rank`` (1 = best), ``item``, ``score``, in
    the dataset's own ids, with a header row. A user's train items are left
    out when :obj:`exclude_train`; a user with fewer than :obj:`k` other
    items gets them all; :obj:`search` as :meth:`Recommender.recommend`.
    The file appears complete or not at all. Returns the number of
    rows."""
    if not 1 <= k <= recommender.sizes.num_items:
        raise ValueError(f"'k' must be in [1, num_items] = "
                         f"[1, {recommender.sizes.num_items}] (got {k})")
    if batch_size < 1:
        raise ValueError(f"'batch_size' must be >= 1 (got {batch_size})")
    rows = 0

    def write(temporary: str) -> None:
        nonlocal rows
        starts = range(0, users.numel(), batch_size)
        with open(temporary, 'w', encoding='utf-8', newline='\n') as f:
            f.write('user\trank\titem\tscore\n')
            for start in tqdm(starts, desc='recommend', unit='batch',
                              disable=None if progress else True,
                              leave=False):
                batch = users[start:start + batch_size]
                item, score = recommender.recommend(batch, k, exclude_train,
                                                    search)
                item, score = item.cpu(), score.float().cpu()
                user_ids = recommender.ids('user', batch)
                for row, user in enumerate(user_ids):
                    kept = item[row] >= 0
                    items = recommender.ids('item', item[row][kept])
                    values = score[row][kept].tolist()
                    f.writelines(f'{user}\t{rank}\t{i}\t{v:.6g}\n'
                                 for rank, (i, v) in enumerate(
                                     zip(items, values), 1))
                    rows += len(items)

    atomic_write(path, write)
    return rows


def write_embeddings(path: str, recommender: Recommender) -> None:
    r"""Writes the final user and item embeddings of a dot-product model to
    the NumPy archive :obj:`path` (``.npz``: ``user_embedding``
    :obj:`[num_users, dim]`, ``item_embedding`` :obj:`[num_items, dim]`,
    ``user_id`` and ``item_id``, the dataset's own ids in row order); a
    model that does not score by inner products raises
    :class:`ValueError`."""
    out = recommender.embeddings()
    if out is None:
        raise ValueError(f'{recommender.recipe.name} does not score by inner '
                         f'products of user and item embeddings, so it has '
                         f'none to export')
    user_emb, item_emb = (t.detach().float().cpu().numpy() for t in out)
    everyone = {kind: recommender.ids(kind, torch.arange(count))
                for kind, count in (('user', recommender.sizes.num_users),
                                    ('item', recommender.sizes.num_items))}

    def write(temporary: str) -> None:
        with open(temporary, 'wb') as f:
            np.savez(f, user_embedding=user_emb, item_embedding=item_emb,
                     user_id=np.array(everyone['user'], dtype=str),
                     item_id=np.array(everyone['item'], dtype=str))

    atomic_write(path, write)


def _index_map(data: HeteroData, recommender: Recommender, kind: str
               ) -> Optional[Tensor]:
    # The model's index of each of the dataset's kind indices (-1 where it
    # has none), or None where they are the same.
    count = data[kind].num_nodes
    mine, theirs = raw_ids(data), recommender.raw_ids
    if mine is None or theirs is None or mine[kind] == theirs[kind]:
        size = getattr(recommender.sizes, f'num_{kind}s')
        if count != size:
            raise ValueError(f'the dataset has {count} {kind}s, the model '
                             f'{size}, and no ids to match them by')
        return None
    index = recommender.index_of(kind, mine[kind])
    return torch.tensor([-1 if i is None else i for i in index])


def _in_model_ids(edge_index: Tensor, maps: Sequence[Optional[Tensor]]
                  ) -> Tensor:
    rows = [edge_index[i] if m is None else m[edge_index[i]]
            for i, m in enumerate(maps)]
    out = torch.stack(rows)
    return out[:, (out >= 0).all(0)]


def evaluate_saved(recommender: Recommender, data: HeteroData,
                   ks: Sequence[int] = (10, 20, 40),
                   batch_size: int = 1024,
                   metrics: Sequence[str] = ('recall', 'ndcg'),
                   num_negatives: Optional[int] = None,
                   sampler: str = 'uniform') -> Dict[str, Any]:
    r"""The metrics of a saved model on the validation and test pairs of
    :obj:`data`, ranked as training ranks them (validation with the train
    pairs masked, test with the train and validation pairs masked), so
    that on the data it was trained on it gives the test metrics of the
    run that saved it. Users and items are matched by the dataset's own ids
    where both the model and :obj:`data` have them (pairs of a user or item
    the model does not know are left out, with a warning), else by index.
    With :obj:`num_negatives`, sampled ranking (see
    :class:`~diffkg_pyg.evaluation.SampledRankingEvaluator`).

    Returns:
        A record: :obj:`'valid'` and :obj:`'test'` metrics,
        :obj:`'evaluation'` (:func:`~diffkg_pyg.evaluation.evaluation_record`),
        :obj:`'dataset'` (:obj:`data`'s record, as a result's),
        :obj:`'same_dataset'` (whether :obj:`data`'s fingerprint is the
        one the model was trained on; :obj:`None` when the model has no
        record of it) and :obj:`'pairs_left_out'`.
    """
    maps = [_index_map(data, recommender, kind) for kind in ('user', 'item')]
    store = data[USER_ITEM]
    pairs = {name: _in_model_ids(store[f'{name}edge_index'], maps)
             for name in ('', 'val_', 'test_')}
    left_out = sum(store[f'{name}edge_index'].size(1) - pairs[name].size(1)
                   for name in pairs)
    if left_out:
        warnings.warn(f'{left_out} pair(s) of the dataset name a user or '
                      f'item the model does not know; they are left out',
                      stacklevel=2)
    train, val, test = pairs[''], pairs['val_'], pairs['test_']
    sizes = recommender.sizes
    evaluators = protocol_evaluators(train, val, test, sizes.num_users,
                                     sizes.num_items, ks, batch_size, metrics,
                                     num_negatives, sampler)
    out: Dict[str, Any] = {
        split: evaluators[split](recommender.scores) if pairs.size(1) else {}
        for split, pairs in (('valid', val), ('test', test))}
    out['evaluation'] = evaluation_record(ks, metrics, num_negatives,
                                          sampler)
    out['dataset'] = dataset_record(data, fingerprint(data))
    trained_on = (recommender.dataset or {}).get('fingerprint')
    out['same_dataset'] = (None if trained_on is None else
                           trained_on == out['dataset']['fingerprint'])
    out['pairs_left_out'] = left_out
    return out


def users_of(recommender: Recommender, spec: str) -> Tensor:
    r"""The users :obj:`spec` names: :obj:`'all'` (every user) or a file
    (:func:`read_users`)."""
    if spec == 'all':
        return torch.arange(recommender.sizes.num_users)
    return read_users(spec, recommender)
