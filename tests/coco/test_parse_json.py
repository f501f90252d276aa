"""Results files are parsed by orjson where it can: the same values as the standard library's json, to the bit."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from segcore.coco.results import parse_json

numbers = st.one_of(st.integers(-2 ** 63, 2 ** 63 - 1), st.floats(allow_nan=False, allow_infinity=False))
values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(), inner, max_size=4)),
    max_leaves=20)


def same(a, b) -> bool:
    """Equal values of equal types, floats to the bit (so -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return math.copysign(1, a) == math.copysign(1, b) and a.hex() == b.hex()
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


@settings(max_examples=300, derandomize=True)
@given(values)
def test_parsed_values_equal_the_standard_librarys(value):
    text = json.dumps(value).encode()
    assert same(parse_json(text), json.loads(text))


@settings(max_examples=300, derandomize=True)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_score_written_with_any_digits_parses_to_the_same_float(score):
    for text in (repr(score), f"{score:.5f}", f"{score:.17g}", f"{score:e}"):
        assert same(parse_json(text.encode()), json.loads(text))


def test_what_orjson_refuses_is_read_or_refused_by_the_standard_library():
    assert math.isnan(parse_json(b'[NaN]')[0]) and parse_json(b"[Infinity, 1e400]") == [math.inf, math.inf]
    assert parse_json('\ufeff[1]'.encode()) == [1]  # a byte-order mark
    assert parse_json(b'["\\ud800"]') == ["\ud800"]  # a lone surrogate
    try:
        parse_json(b"[1, 2")
    except json.JSONDecodeError as error:  # the standard library's words, with line and column
        assert (error.lineno, error.colno) == (1, 6)
    else:
        raise AssertionError("a truncated file was read")
