"""Values are stored as integer counts of the channel resolution when exact: read back unchanged."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from node.buffer.base import decode_value, encode_value
from node.model import CHANNEL_UNITS

RESOLUTIONS = sorted({res for _, res in CHANNEL_UNITS.values()} | {0.001, 0.5, 0.2794, 0.25})


@given(st.floats(allow_nan=False), st.sampled_from(RESOLUTIONS))
def test_any_float_round_trips(value, res):
    assert decode_value(encode_value(value, res), res) == value


@given(st.integers(-10**9, 10**9), st.sampled_from(RESOLUTIONS))
def test_values_rounded_to_the_resolution_become_integers(k, res):
    value = round(k * res, 6)  # what the sampler hands over
    stored = encode_value(value, res)
    assert isinstance(stored, int) and stored == k
    assert decode_value(stored, res) == value


def test_examples():
    assert encode_value(23.45, 0.01) == 2345
    assert encode_value(0.2794, 0.0001) == 2794
    assert encode_value(23.451, 0.01) == 23.451  # not on the grid: kept as a float
    assert encode_value(None, 0.01) is None
