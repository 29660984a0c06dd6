"""features.json_columns: a batch's JSON text made from its columns is, byte for byte, what
to_json_line gives each value and each record, whatever the values hold."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import numpy as np
import pytest

from features.formats import to_json_line
from features.json_columns import NUMBER, LineTemplate, _MARK, number_texts, object_heads, object_texts, string_texts

HOSTILE_STRINGS = ["", "a", 'q"', 'q","', '","', "\\", "a\\", '\\"', "\n\r\t", "é€😀", "\udcff lone", "\x00", "},{",
                   "],[", ",", _MARK, f'{_MARK}"']


def hard_floats(n: int = 4000, seed: int = 5) -> np.ndarray:
    rng = random.Random(seed)
    special = [0.0, -0.0, 1.0, -1.0, 0.1, 1e-7, 1e-5, 1e-4, 1e15, 1e16, 1e17, 123456789012345680.0, 5e-324,
               2.2250738585072014e-308, 1.7976931348623157e308, float("nan"), float("inf"), float("-inf"),
               0.09999990463256836, 1020.0, 28.542228458237044, 2.5, -2.4999999999999964]
    xs = special + [rng.uniform(-1, 1) * 10 ** rng.randint(-30, 30) for _ in range(n)]
    xs += [round(rng.gauss(20, 5), rng.randint(0, 8)) for _ in range(n)]
    return np.array(xs)


def test_number_texts_are_to_json_line_of_each_float() -> None:
    xs = hard_floats()
    M = xs[:len(xs) // 7 * 7].reshape(-1, 7)
    assert number_texts(M) == [to_json_line(x) for x in M.ravel().tolist()]
    assert number_texts(np.empty((0, 3))) == [] and number_texts(np.empty((3, 0))) == []
    with pytest.raises(ValueError, match="matrix"):
        number_texts(xs)


def test_string_texts_are_to_json_line_of_each_string_without_quotes() -> None:
    values = HOSTILE_STRINGS * 3
    assert string_texts(values) == [to_json_line(v)[1:-1] for v in values]
    assert string_texts([]) == [] and string_texts([""]) == [b""]


def test_object_texts_and_heads_are_to_json_line_of_each_value() -> None:
    values = [{"a": s, "b": [{"x": 1}, {"y": s}], s: None} for s in HOSTILE_STRINGS]
    values += [{}, {"t": datetime(2024, 1, 1, tzinfo=timezone.utc), "n": np.int64(3), "f": np.float32(0.5)},
               {1: "not a str key"}, {"m": {"nested": _MARK}}, {"list": [{}, _MARK, 1]}]
    want = [to_json_line(v) for v in values]
    assert object_texts(values) == want
    assert object_heads(values) == [w[:-1] for w in want]
    for v, w in zip(values, want):  # one value, alone
        assert object_texts([v]) == [w] and object_heads([v]) == [w[:-1]]
    assert object_texts([]) == [] == object_heads([])


def test_a_template_lays_out_each_row_as_its_record_would_be() -> None:
    rng = random.Random(7)
    xs = hard_floats(300)
    n = 200
    names = ["plain", 'quo"te', "é"]
    nums = np.array([[xs[rng.randrange(len(xs))] for _ in names] for _ in range(n)])
    ids = [rng.choice(HOSTILE_STRINGS) + str(j) for j in range(n)]
    heads = [{"k": rng.choice(HOSTILE_STRINGS)} for _ in range(n)]
    parts: list = [0, b',"id":"', 1, b'","v":{']
    for i, name in enumerate(names):
        parts += [b"," if i else b"", to_json_line(name), b":", NUMBER]
    parts += [b"}", b"", b"}\n"]
    t = LineTemplate(parts)
    assert t.n_numbers == 3 and t.n_columns == 2
    whole = {5: b"whole five\n", 0: b"whole zero\n", n - 1: b"last\n"}
    text, ends = t.render(nums, [object_heads(heads), string_texts(ids)], whole)
    want = [whole.get(j) or to_json_line({**heads[j], "id": ids[j], "v": dict(zip(names, nums[j].tolist()))}) + b"\n"
            for j in range(n)]
    assert text == b"".join(want)
    assert ends.tolist() == np.cumsum([len(w) for w in want]).tolist()
    assert t.render(nums[:0], [[], []]) == (b"", pytest.approx(np.empty(0)))


def test_a_template_refuses_what_does_not_fit_it() -> None:
    t = LineTemplate([b"[", NUMBER, b",", 0, b"]\n"])
    with pytest.raises(ValueError, match="numbers of shape"):
        t.render(np.zeros((2, 2)), [[b"a", b"b"]])
    with pytest.raises(ValueError, match="column 0 has 1 texts for 2 rows"):
        t.render(np.zeros((2, 1)), [[b"a"]])
    with pytest.raises(ValueError, match="1 columns"):
        LineTemplate([0, 1]).render(np.zeros((1, 0)), [[b"a"]])
    with pytest.raises(ValueError, match="a part is bytes, NUMBER or a column"):
        LineTemplate([b"x", -5])


def test_object_heads_takes_dicts_only() -> None:
    with pytest.raises(TypeError, match="expected dicts, got"):
        object_heads([{"a": 1}, [1]])


def _nested(depth: int) -> object:
    v: object = 1
    for _ in range(depth):
        v = [v]
    return v


def test_a_value_nested_at_orjsons_limit_is_cut_as_it_is_written_alone() -> None:
    """A field nested as deep as orjson writes on its own (its record too) is one level
    deeper in the list of one call: that call fails, the values go one at a time."""
    deep = {"deep": _nested(253), "x": 1}
    to_json_line(deep)  # writes alone...
    with pytest.raises(Exception):
        to_json_line([deep])  # ...not one level deeper
    values = [{"a": 1}, deep, {"b": "c"}]
    want = [to_json_line(v) for v in values]
    assert object_texts(values) == want
    assert object_heads(values) == [w[:-1] for w in want]

