"""Input fingerprints: one stable id per task and input, whatever the process or the input."""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from typing import Any

from celery_watchdog.model.fingerprint import describe, fingerprint


def fp(*args: Any, **kwargs: Any) -> str:
    return fingerprint("import_csv", args, kwargs)


def test_a_fingerprint_is_a_short_id_that_does_not_change() -> None:
    value = fingerprint("import_csv", (555, "a.csv"), {"force": True, "tags": {"x", "y"}})
    assert re.fullmatch(r"fp_[0-9a-f]{16}", value)
    # Pinned: a change of encoding changes every stored fingerprint, so it must be deliberate.
    assert value == "fp_720864a99433b4c2"
    assert value == fingerprint("import_csv", [555, "a.csv"], {"tags": {"y", "x"}, "force": True})


def test_every_kind_of_value_is_encoded_as_pinned() -> None:
    # The same on Python 3.10 to 3.13 and under any PYTHONHASHSEED (sets are sorted by encoding).
    values = [{"a", "b", frozenset({"c"})}, 1.5, None, True, math.nan, -0.0, 10**50, b"\x00"]
    value = fingerprint("t", ([*values, "\ud800"],), {"k": {"z": 1, "a": (1,)}})
    assert value == "fp_26186348dc31170c"
    picked = fingerprint("t", (1,), {}, only=["y", "x"], param_names=["x"])
    assert picked == "fp_46a6b64efffcd991"


def test_the_task_name_is_part_of_the_fingerprint() -> None:
    assert fingerprint("a", (1,), {}) != fingerprint("b", (1,), {})


def test_tuples_and_lists_are_the_same_input_as_after_a_json_round_trip() -> None:
    assert fp((1, (2, 3))) == fp([1, [2, 3]])


def test_dict_order_does_not_matter() -> None:
    assert fp({"a": 1, "b": 2}) == fp({"b": 2, "a": 1}) == fp(OrderedDict(b=2, a=1))
    assert fp(a=1, b=2) == fp(b=2, a=1)


def test_values_of_different_types_do_not_collide() -> None:
    ids = {fp(1), fp(1.0), fp(True), fp("1"), fp(b"1"), fp([1]), fp({1}), fp(None), fp()}
    assert len(ids) == 9
    assert fp(0.0) == fp(-0.0)
    assert fp(1, 2) != fp((1, 2)) != fp(12)
    assert fp("ab", "c") != fp("a", "bc")


def test_nan_and_infinities_have_a_fixed_encoding() -> None:
    assert fp(float("nan")) == fp(math.nan) == fp(-math.nan)
    assert len({fp(math.inf), fp(-math.inf), fp(math.nan)}) == 3


def test_positional_and_named_arguments_are_told_apart_without_only() -> None:
    assert fingerprint("t", (555,), {}) != fingerprint("t", (), {"file_id": 555})


def test_only_picks_parameters_by_name_from_kwargs_or_positional_args() -> None:
    names = ("file_id", "path")
    by_name = fingerprint("t", (), {"file_id": 555, "path": "a"}, only=["file_id"])
    by_position = fingerprint("t", (555, "b"), {}, only=["file_id"], param_names=names)
    assert by_name == by_position
    assert by_name != fingerprint("t", (556,), {}, only=["file_id"], param_names=names)
    assert by_name == fingerprint("t", (), {"file_id": 555}, only="file_id")


def test_a_named_parameter_that_is_absent_counts_as_absent_and_never_raises() -> None:
    absent = fingerprint("t", (555,), {}, only=["file_id"])  # no param_names: cannot tell
    assert absent == fingerprint("t", (), {}, only=["file_id"], param_names=["x"])
    assert absent != fingerprint("t", (), {"file_id": None}, only=["file_id"])


def test_a_50_mb_string_is_hashed_in_full() -> None:
    big = "x" * 50_000_000
    assert fp(big) == fp(big)
    assert fp(big) != fp(big[:-1] + "y")
    assert fp(b"x" * 50_000_000) != fp(big)


def test_huge_containers_are_bounded() -> None:
    assert fp(list(range(1_000_000))) != fp(list(range(1_000_001)))
    assert fp(set(range(1_000_000))) == fp(set(range(1_000_000)))
    assert fp(10**10_000) != fp(10**10_000 + 1)


def test_a_list_containing_itself_does_not_recurse_forever() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    nested: dict[str, Any] = {}
    nested["self"] = nested
    assert fp(loop) == fp(loop)
    assert fp(nested) == fp(nested)


def test_depth_beyond_the_limit_is_cut() -> None:
    deep: Any = 0
    for _ in range(5000):
        deep = [deep]
    assert fp(deep) == fp(deep)


class Widget:
    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        return f"Widget({self.n})"


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class Anonymous:
    pass


def test_other_objects_count_by_type_and_repr() -> None:
    assert fp(Widget(1)) == fp(Widget(1)) != fp(Widget(2))
    assert fp(Hostile()) == fp(Hostile())
    assert fp(Anonymous()) == fp(Anonymous())  # "<… object at 0x…>": the address is left out


def test_lone_surrogates_and_controls_are_fine() -> None:
    assert fp("\ud800") == fp("\ud800") != fp("\udc00")
    assert fp({"\udcff": "\x00\x1b"}) == fp({"\udcff": "\x00\x1b"})


def test_describe_shows_the_arguments_the_fingerprint_uses() -> None:
    assert describe("import_csv", (555, "a.csv"), {}) == "import_csv(555, 'a.csv')"
    assert describe("import_csv", (555,), {"force": True}) == "import_csv(555, force=True)"
    picked = describe("import_csv", (555, "a.csv"), {}, only=["file_id"], param_names=["file_id"])
    assert picked == "import_csv(file_id=555)"
    assert describe("import_csv", (), {}, only=["file_id"]) == "import_csv(file_id=?)"
    assert describe("ping", None, None) == "ping()"


def test_describe_is_cut_at_its_limit_and_escapes_what_a_terminal_would_act_on() -> None:
    shown = describe("t", ("x" * 10_000, list(range(1000))), {"k": "v" * 500})
    assert len(shown) <= 80 and shown.endswith("…")
    assert len(describe("t", ("x" * 100,), {}, limit=20)) == 20
    evil = describe("t", ("\x1b[2J\ud800",), {"\u202ek": Widget(7)})
    assert "\x1b" not in evil and "\u202e" not in evil and "\ud800" not in evil
    assert "Widget(7)" in evil


def test_describe_never_raises() -> None:
    class BadMapping(dict[str, Any]):
        def items(self) -> Any:
            raise RuntimeError("no items")

    assert describe("t", (Hostile(),), {}) == "t(<Hostile>)"
    assert describe("t", (), BadMapping(a=1)) == "t(…)"
    assert fingerprint("t", (), BadMapping(a=1)) == fingerprint("t", (), BadMapping(b=2))
