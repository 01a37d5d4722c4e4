import pickle

import numpy as np
import pytest
import scipy.sparse as sp

from diffkg_pyg.data import (
    DataFormatError,
    MissingFileError,
    read_interaction_file,
    read_interaction_matrix,
    read_triplet_file,
)
from tests.conftest import write


def test_read_interaction_file(tmp_path):
    path = write(tmp_path / 'train.txt', '0 5 6 7\n1\n2 8\r\n\n3 9 9')
    out = read_interaction_file(path)
    assert out.user.tolist() == [0, 0, 0, 2, 3, 3]
    assert out.item.tolist() == [5, 6, 7, 8, 9, 9]
    assert out.line.tolist() == [1, 1, 1, 3, 5, 5]
    assert out.user.dtype == np.int64


def test_read_triplet_file(tmp_path):
    path = write(tmp_path / 'kg.txt', '0 1 2\n\n3\t4 5\n123456789012 0 1\n')
    out = read_triplet_file(path)
    assert out.head.tolist() == [0, 3, 123456789012]
    assert out.relation.tolist() == [1, 4, 0]
    assert out.tail.tolist() == [2, 5, 1]
    assert out.line.tolist() == [1, 3, 4]


@pytest.mark.parametrize('text,line,reason', [
    ('0 1 2\n1 x 3\n', 2, "invalid token 'x'"),
    ('0 1 2\n1 -3 3\n', 2, "negative id '-3'"),
    ('0 1\n1 2\n2 3.5\n', 3, "non-integer id '3.5'"),
    ('0 1\n1 1e3\n', 2, "non-integer id '1e3'"),
    ('0 1,2\n', 1, "invalid token '1,2'"),
    ('', 1, 'the file is empty'),
    ('\n \n', 1, 'the file is empty'),
    ('0 1234567890123456789\n', 1, 'more than 18 digits'),
])
def test_interaction_file_errors(tmp_path, text, line, reason):
    path = write(tmp_path / 'train.txt', text)
    with pytest.raises(DataFormatError, match=reason) as info:
        read_interaction_file(path)
    assert info.value.path == path
    assert info.value.line == line
    assert str(info.value).startswith(f'{path}, line {line}: ')


@pytest.mark.parametrize('text,line,reason', [
    ('0 1 2\n3 4\n', 2, r'expected 3 ids \(head relation tail\), found 2'),
    ('0 1 2\n3 4 5 6\n', 2, 'found 4'),
    ('0 1 2\n3 4 -5\n', 2, 'negative id'),
    ('', 1, 'empty'),
])
def test_triplet_file_errors(tmp_path, text, line, reason):
    path = write(tmp_path / 'kg_final.txt', text)
    with pytest.raises(DataFormatError, match=reason) as info:
        read_triplet_file(path)
    assert info.value.line == line


@pytest.mark.parametrize('reader', [
    read_interaction_file, read_triplet_file, read_interaction_matrix
])
def test_missing_file(tmp_path, reader):
    path = str(tmp_path / 'absent.txt')
    with pytest.raises(MissingFileError, match='absent.txt: file not found'):
        reader(path)
    with pytest.raises(FileNotFoundError):  # Also a standard error type.
        reader(path)


@pytest.mark.parametrize('dense', [False, True])
def test_read_interaction_matrix(tmp_path, dense):
    matrix = sp.coo_matrix(([1.0, 2.0, 0.0], ([0, 2, 1], [1, 3, 0])),
                           shape=(4, 5))
    path = tmp_path / 'trnMat.pkl'
    with open(path, 'wb') as f:
        pickle.dump(matrix.toarray() if dense else matrix, f)
    out = read_interaction_matrix(str(path))
    pairs = sorted(zip(out.user.tolist(), out.item.tolist()))
    assert pairs == [(0, 1), (2, 3)]
    assert out.shape == (4, 5)
    assert out.line is None


@pytest.mark.parametrize('content,reason', [
    (b'not a pickle', 'not a readable pickle file'),
    (pickle.dumps([1, 2, 3]), 'expected a 2-D user x item matrix'),
    (pickle.dumps(sp.coo_matrix((2, 2))), 'the matrix is empty'),
])
def test_interaction_matrix_errors(tmp_path, content, reason):
    path = tmp_path / 'tstMat.pkl'
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=reason):
        read_interaction_matrix(str(path))
