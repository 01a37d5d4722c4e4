r"""Property-based tests of the file readers: any input either loads into
exactly what a plain reference parser reads, or raises the package's own
:class:`DataError`; never another exception, never a silently different
result."""
import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffkg_pyg.data import (
    DataError,
    read_interaction_file,
    read_interaction_matrix,
    read_triplet_file,
)

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
ALPHABET = b'0123456789 \t\r\n-.+ex\xff\xef\xbb\xbf,'


def reference_lines(data: bytes):
    r"""The format, literally: lines split on newlines, tokens on spaces,
    tabs and carriage returns, every token a non-negative integer of at
    most 18 digits; ``None`` when the input is not of that format. A
    UTF-8 byte-order mark is dropped, and a file without a newline but
    with carriage returns has old Mac line ends."""
    if data.startswith(b'\xef\xbb\xbf'):
        data = data[3:]
    if b'\r' in data and b'\n' not in data:
        data = data.replace(b'\r', b'\n')
    lines = []
    for text in data.split(b'\n'):
        tokens = text.replace(b'\t', b' ').replace(b'\r', b' ').split(b' ')
        tokens = [t for t in tokens if t]
        if not all(t.isdigit() and len(t) <= 18 for t in tokens):
            return None
        lines.append([int(t) for t in tokens])
    if not any(lines):
        return None
    return lines


def read(reader, data: bytes):
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, 'file.txt')
        with open(path, 'wb') as f:
            f.write(data)
        return reader(path)


def interaction_reference(lines):
    pairs = [(line[0], item) for line in lines if line for item in line[1:]]
    return [p[0] for p in pairs], [p[1] for p in pairs]


separators = st.sampled_from([b' ', b'  ', b'\t', b' \t '])
ids = st.integers(0, 10**12)


@st.composite
def well_formed(draw, width=None):
    lines = draw(st.lists(st.lists(ids, min_size=width or 1,
                                   max_size=width or 6), min_size=1,
                          max_size=20))
    out = []
    for line in lines:
        separator = draw(separators)
        ending = draw(st.sampled_from([b'', b' ', b'\r']))
        out.append(separator.join(str(v).encode() for v in line) + ending)
        if draw(st.booleans()):
            out.append(b'')  # A blank line.
    return b'\n'.join(out) + draw(st.sampled_from([b'', b'\n']))


@SETTINGS
@given(well_formed())
def test_interaction_file_reads_well_formed_input(data):
    result = read(read_interaction_file, data)
    users, items = interaction_reference(reference_lines(data))
    assert result.user.tolist() == users and result.item.tolist() == items


@SETTINGS
@given(well_formed(width=3))
def test_triplet_file_reads_well_formed_input(data):
    result = read(read_triplet_file, data)
    triplets = [line for line in reference_lines(data) if line]
    assert np.stack([result.head, result.relation, result.tail], 1
                    ).tolist() == triplets


@SETTINGS
@given(st.binary(max_size=200) | st.lists(
    st.sampled_from([ALPHABET[i:i + 1] for i in range(len(ALPHABET))]),
    max_size=80).map(b''.join))
def test_readers_on_arbitrary_bytes(data):
    lines = reference_lines(data)
    try:
        result = read(read_interaction_file, data)
    except DataError as error:
        assert lines is None, f'rejected valid input: {error}'
    else:
        assert lines is not None
        users, items = interaction_reference(lines)
        assert result.user.tolist() == users
        assert result.item.tolist() == items
    try:
        result = read(read_triplet_file, data)
    except DataError:
        assert lines is None or any(len(line) not in (0, 3)
                                    for line in lines)
    else:
        assert [line for line in lines if line] == np.stack(
            [result.head, result.relation, result.tail], 1).tolist()


@SETTINGS
@given(st.binary(max_size=300))
def test_matrix_reader_on_arbitrary_bytes(data):
    with pytest.raises(DataError):
        read(read_interaction_matrix, data)
