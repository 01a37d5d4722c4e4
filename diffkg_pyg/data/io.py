r"""Readers for the on-disk layouts of recommendation datasets.

* The KGAT/KGIN text layout: ``train.txt`` and ``test.txt`` with one line per
  user (``user item item ...``) and ``kg_final.txt`` with one triplet per line
  (``head relation tail``).
* The layout of the DiffKG authors: ``trnMat.pkl`` and ``tstMat.pkl``
  (pickled :class:`scipy.sparse` user x item matrices) and ``kg.txt``
  (``head relation tail``).
* DiffRec's layout (no knowledge graph): ``train_list.npy``,
  ``valid_list.npy`` and ``test_list.npy``, NumPy arrays of (user, item)
  rows, each user's rows in chronological order.

Text files are parsed with vectorised :obj:`numpy` operations on the raw
bytes (no Python loop over lines), so the full Alibaba-iFashion loads in well
under a second. Every problem is reported as a :class:`DataFormatError` that
names the file, the 1-based line number and what was wrong.
"""
import hashlib
import io
import os
import os.path as osp
import pickle
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

__all__ = [
    'DataError',
    'DataFormatError',
    'MissingFileError',
    'InteractionFile',
    'TripletFile',
    'read_interaction_file',
    'read_interaction_matrix',
    'read_triplet_file',
    'read_pair_array',
]

# Tokens longer than this could overflow int64 while being accumulated:
_MAX_DIGITS = 18
_NEWLINE, _SPACE, _TAB, _RETURN = 10, 32, 9, 13


class DataError(ValueError):
    r"""Base class of every error raised for bad dataset input."""


class DataFormatError(DataError):
    r"""A dataset file whose content is not what its format prescribes.

    Args:
        path (str): The offending file.
        line (int, optional): The 1-based line number, if the problem has one.
        reason (str): What was wrong.
    """
    def __init__(self, path: str, line: Optional[int], reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        where = path if line is None else f'{path}, line {line}'
        super().__init__(f'{where}: {reason}')


class MissingFileError(DataError, FileNotFoundError):
    r"""A dataset file that does not exist."""
    def __init__(self, path: str, hint: str = '') -> None:
        self.path = path
        message = f'{path}: file not found'
        super().__init__(f'{message}. {hint}' if hint else message)


@dataclass
class InteractionFile:
    r"""User-item pairs read from one file.

    Attributes:
        path (str): The file they were read from.
        user (numpy.ndarray): User ids, shape :obj:`[num_pairs]`.
        item (numpy.ndarray): Item ids, shape :obj:`[num_pairs]`.
        line (numpy.ndarray, optional): The 1-based line of each pair (text
            files only), used to point errors found later at their source.
        shape (Tuple[int, int], optional): :obj:`(num_users, num_items)` when
            the file states it (pickled matrices only).
    """
    path: str
    user: np.ndarray
    item: np.ndarray
    line: Optional[np.ndarray] = None
    shape: Optional[Tuple[int, int]] = None

    def locate(self, index: int) -> Optional[int]:
        r"""Returns the line of pair :obj:`index`, if known."""
        return None if self.line is None else int(self.line[index])


@dataclass
class TripletFile:
    r"""Knowledge-graph triplets read from one file (all shapes
    :obj:`[num_triplets]`, in file order)."""
    path: str
    head: np.ndarray
    relation: np.ndarray
    tail: np.ndarray
    line: np.ndarray


def _hash_file(path: str, digest) -> str:
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _file_digest(path: str) -> str:
    return _hash_file(path, hashlib.sha256())


def _git_blob_id(path: str) -> str:
    header = f'blob {osp.getsize(path)}\0'.encode()
    return _hash_file(path, hashlib.sha1(header))


def _read_bytes(path: str) -> bytes:
    r"""The bytes of a text file, with a UTF-8 byte-order mark removed and
    old Mac line ends (CR alone) read as line ends."""
    if osp.isdir(path):
        raise DataFormatError(path, None, 'is a folder, not a file')
    if not osp.isfile(path):
        raise MissingFileError(path)
    with open(path, 'rb') as f:
        data = f.read()
    if data.startswith(b'\xef\xbb\xbf'):  # Editors on Windows write it.
        data = data[3:]
    if b'\r' in data and b'\n' not in data:  # CR-only line ends.
        data = data.replace(b'\r', b'\n')
    return data


def _describe_token(token: str) -> str:
    body = token[1:]
    if token.startswith('-') and body.isdigit():
        return f"negative id '{token}': ids must be non-negative integers"
    try:
        float(token)
    except ValueError:
        return f"invalid token '{token}': ids must be non-negative integers"
    return f"non-integer id '{token}': ids must be non-negative integers"


def _token_error(path: str, data: bytes, position: int, newlines: np.ndarray,
                 reason: Optional[str] = None) -> DataFormatError:
    line = int(np.searchsorted(newlines, position, side='right'))
    start = data.rfind(b'\n', 0, position) + 1
    end = data.find(b'\n', position)
    text = data[start:len(data) if end < 0 else end]
    offset = position - start
    # Widen `offset` to the whitespace-separated token that contains it:
    left = max(text.rfind(b' ', 0, offset), text.rfind(b'\t', 0, offset)) + 1
    right = min(i for i in (text.find(b' ', offset), text.find(
        b'\t', offset), text.find(b'\r', offset), len(text)) if i >= 0)
    token = text[left:right].decode('utf-8', errors='replace')
    return DataFormatError(path, line + 1, reason or _describe_token(token))


def _tokenize(path: str, data: bytes):
    r"""Parses a whitespace-separated file of non-negative integers.

    Returns the values and the 0-based line of every token, both
    :obj:`int64` arrays of shape :obj:`[num_tokens]`.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buf == _NEWLINE)
    is_digit = (buf >= 48) & (buf <= 57)
    is_space = ((buf == _SPACE) | (buf == _TAB) | (buf == _NEWLINE) |
                (buf == _RETURN))
    bad = np.flatnonzero(~(is_digit | is_space))
    if bad.size > 0:
        raise _token_error(path, data, int(bad[0]), newlines)

    change = np.diff(is_digit.astype(np.int8), prepend=0, append=0)
    starts = np.flatnonzero(change == 1)
    ends = np.flatnonzero(change == -1)
    if starts.size == 0:
        raise DataFormatError(path, 1, 'the file is empty (no ids found)')
    lengths = ends - starts
    too_long = np.flatnonzero(lengths > _MAX_DIGITS)
    if too_long.size > 0:
        raise _token_error(path, data, int(starts[too_long[0]]), newlines,
                           f'id with more than {_MAX_DIGITS} digits')

    # Accumulate digit by digit, vectorised over tokens (<= 18 passes):
    values = np.zeros(starts.size, dtype=np.int64)
    for j in range(int(lengths.max())):
        active = np.flatnonzero(lengths > j)
        digit = buf[starts[active] + j].astype(np.int64) - 48
        values[active] = values[active] * 10 + digit
    return values, np.searchsorted(newlines, starts)


def read_interaction_file(path: str) -> InteractionFile:
    r"""Reads a KGAT-style interaction file (``user item item ...`` per
    line; a line with a user alone is a user without items).

    Args:
        path (str): The file to read.

    Raises:
        MissingFileError: If the file does not exist.
        DataFormatError: If the file is empty or holds anything but
            non-negative integer ids.
    """
    values, line = _tokenize(path, _read_bytes(path))
    is_first = np.ones(values.size, dtype=bool)
    is_first[1:] = line[1:] != line[:-1]
    owner = np.cumsum(is_first) - 1  # Line-local index of every token.
    user = values[is_first][owner]
    is_item = ~is_first
    return InteractionFile(path, user[is_item], values[is_item],
                           line[is_item] + 1)


def read_triplet_file(path: str) -> TripletFile:
    r"""Reads a knowledge-graph file with one ``head relation tail`` triplet
    of non-negative integer ids per line (blank lines are ignored).

    Args:
        path (str): The file to read.

    Raises:
        MissingFileError: If the file does not exist.
        DataFormatError: If the file is empty, holds anything but
            non-negative integer ids, or a line does not hold exactly three.
    """
    values, line = _tokenize(path, _read_bytes(path))
    is_first = np.ones(values.size, dtype=bool)
    is_first[1:] = line[1:] != line[:-1]
    first = np.flatnonzero(is_first)
    count = np.diff(first, append=values.size)
    wrong = np.flatnonzero(count != 3)
    if wrong.size > 0:
        k = wrong[0]
        raise DataFormatError(
            path, int(line[first[k]]) + 1,
            f'expected 3 ids (head relation tail), found {int(count[k])}')
    triplets = values.reshape(-1, 3)
    return TripletFile(path, triplets[:, 0].copy(), triplets[:, 1].copy(),
                       triplets[:, 2].copy(), line[first] + 1)


def read_interaction_matrix(path: str) -> InteractionFile:
    r"""Reads a pickled user x item interaction matrix as used by the DiffKG
    authors (``trnMat.pkl``, ``tstMat.pkl``); every non-zero entry is an
    interaction.

    .. warning::
        Unpickling can execute code: only read files from a source you trust
        (the dataset classes verify downloaded files against known hashes).

    Args:
        path (str): The file to read.

    Raises:
        MissingFileError: If the file does not exist.
        DataFormatError: If the file does not hold a 2-D matrix with at least
            one non-zero entry.
    """
    import scipy.sparse as sp

    data = _read_bytes(path)
    try:
        matrix = pickle.loads(data)
    except Exception as e:  # Any unpickling failure means a corrupt file.
        raise DataFormatError(
            path, None, f'not a readable pickle file ({e})') from e
    if not sp.issparse(matrix):
        if not isinstance(matrix, np.ndarray) or matrix.ndim != 2:
            raise DataFormatError(
                path, None, f'expected a 2-D user x item matrix, found '
                f'{type(matrix).__name__}')
    if matrix.ndim != 2:
        raise DataFormatError(path, None, 'expected a 2-D matrix')
    matrix = sp.coo_matrix(matrix)
    nonzero = matrix.data != 0
    if not nonzero.any():
        raise DataFormatError(path, None,
                              'the matrix is empty (no interactions)')
    user = matrix.row[nonzero].astype(np.int64)
    item = matrix.col[nonzero].astype(np.int64)
    return InteractionFile(path, user, item, None, tuple(matrix.shape))


def read_pair_array(path: str) -> InteractionFile:
    r"""Reads a NumPy array of (user, item) rows (DiffRec's
    ``train_list.npy``, ``valid_list.npy``, ``test_list.npy``), keeping the
    row order.

    Raises:
        MissingFileError: If the file does not exist.
        DataFormatError: If it is not a NumPy file holding an integer array
            of shape :obj:`[num_pairs, 2]` with non-negative ids.
    """
    data = _read_bytes(path)
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as e:  # Any NumPy reading failure: a corrupt file.
        raise DataFormatError(path, None,
                              f'not a readable .npy array ({e})') from e
    if array.ndim != 2 or array.shape[1] != 2:
        raise DataFormatError(path, None, f'expected an array of (user, '
                              f'item) rows, shape [n, 2]; found shape '
                              f'{list(array.shape)}')
    if not np.issubdtype(array.dtype, np.integer):
        raise DataFormatError(path, None, f'expected integer ids, found '
                              f'dtype {array.dtype}')
    if array.shape[0] == 0:
        raise DataFormatError(path, None, 'the array is empty')
    negative = np.flatnonzero((array < 0).any(axis=1))
    if negative.size > 0:
        k = int(negative[0])
        raise DataFormatError(path, None, f'row {k}: negative id '
                              f'{array[k].tolist()}')
    array = array.astype(np.int64)
    return InteractionFile(path, array[:, 0].copy(), array[:, 1].copy())


def find_files(folder: str, names: List[str]) -> List[str]:
    r"""Returns the paths of :obj:`names` in :obj:`folder`, raising a
    :class:`MissingFileError` for the first that is absent."""
    paths = [osp.join(folder, name) for name in names]
    for path in paths:
        if not osp.isfile(path):
            present = sorted(os.listdir(folder)) if osp.isdir(folder) else []
            raise MissingFileError(
                path, f'The folder holds {present or "nothing"}; expected '
                f'{", ".join(names)}.')
    return paths
