"""Input fingerprints: "the same input to the same task", as a short stable id.

A fingerprint is ``fp_`` and 16 hex digits of blake2b over a canonical encoding of the task
name and its arguments (all of them, or only the parameters named by ``fingerprint_args``).
The encoding is the same in every process and on every Python from 3.10: no ``hash()``, no
repr of a dict or a set, types tagged so that ``1``, ``1.0`` and ``True`` differ, tuples
encoded as lists (a JSON round trip turns one into the other), dict items and set members
sorted by their own encoding. Values are fed to the hash as they are walked, in chunks, so a
50 MB argument costs one pass over it and no copy; a depth limit, a cap on values visited and
a cycle check bound the rest. :func:`describe` gives the same choice of arguments as a short
label for alerts. Pure, and neither function raises.
"""

from __future__ import annotations

import hashlib
import math
import re
import reprlib
from collections.abc import Mapping, Sequence
from typing import Any

from .humanize import printable

PREFIX = "fp_"
_DIGEST = 8  # bytes: 16 hex digits
_DEPTH = 20
_MAX_VALUES = 100_000  # values encoded in full; past it a container records only its length
_REPR = 1000  # characters of an unknown object's repr that count
_CHUNK = 64 * 1024
_ADDRESS = re.compile(r" at 0x[0-9A-Fa-f]+")  # "<Foo object at 0x7f…>" differs per process


class _Absent:
    """A parameter named in ``only`` that this call did not pass."""


ABSENT = _Absent()


class _Encoder:
    """Feeds the canonical encoding of values to one blake2b, buffered in small chunks."""

    def __init__(self, budget: list[int], path: set[int]) -> None:
        self.hash = hashlib.blake2b(digest_size=16)
        self.buffer = bytearray()
        self.budget = budget  # shared with the encoders of dict items and set members
        self.path = path  # ids of the containers being encoded: a cycle is seen, not followed

    def feed(self, data: bytes | memoryview) -> None:
        if len(data) >= _CHUNK:
            self.flush()
            self.hash.update(data)
            return
        self.buffer += data
        if len(self.buffer) >= _CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.hash.update(self.buffer)
            self.buffer.clear()

    def digest(self) -> bytes:
        self.flush()
        return self.hash.digest()

    def head(self, tag: bytes, size: int) -> None:
        self.feed(tag + str(size).encode() + b":")

    def text(self, tag: bytes, value: str) -> None:
        self.head(tag, len(value))  # a length in characters: the UTF-8 that follows ends there
        for start in range(0, len(value), _CHUNK):  # a surrogate pair is two code points anyway
            self.feed(value[start : start + _CHUNK].encode("utf-8", "surrogatepass"))

    def value(self, value: Any, depth: int = 0) -> None:
        try:
            self._value(value, depth)
        except Exception:  # a hostile container (items() raising): its type still counts
            self.text(b"!", _type_name(value))

    def _value(self, value: Any, depth: int) -> None:
        self.budget[0] -= 1
        if value is None or value is ABSENT:
            self.feed(b"N" if value is None else b"A")
        elif isinstance(value, bool):
            self.feed(b"T" if value else b"F")
        # Subclasses (IntEnum, StrEnum) count as their plain value, as JSON would send them;
        # the unbound base methods ignore whatever a subclass overrides.
        elif isinstance(value, int):
            self.feed(b"i" + int.__format__(value, "x").encode() + b";")  # no 4300-digit cap
        elif isinstance(value, float):
            self.feed(b"f" + _float(float.__float__(value)) + b";")
        elif isinstance(value, str):
            self.text(b"s", value if type(value) is str else str.__str__(value))
        elif isinstance(value, (bytes, bytearray, memoryview)):
            view = memoryview(value).cast("B")
            self.head(b"b", len(view))
            self.feed(view)
        elif depth >= _DEPTH or self.budget[0] < 0:
            self.feed(b"D")
        elif isinstance(value, (list, tuple, Mapping, set, frozenset)):
            if id(value) in self.path:
                self.feed(b"R")
                return
            self.path.add(id(value))
            try:
                self._container(value, depth + 1)
            finally:
                self.path.discard(id(value))
        else:
            self.text(b"o", _type_name(value))
            self.text(b"r", _repr(value))

    def _container(self, value: Any, depth: int) -> None:
        if isinstance(value, (list, tuple)):
            self.head(b"l", len(value))
            for item in value:
                if self.budget[0] < 0:
                    self.feed(b"X")  # the length said how many; the rest is not looked at
                    return
                self.value(item, depth)
        elif len(value) > self.budget[0]:  # sorting only some members would depend on order
            self.head(b"X", len(value))
        elif isinstance(value, Mapping):
            pairs = sorted((self._sub(k, depth), self._sub(v, depth)) for k, v in value.items())
            self.head(b"d", len(pairs))
            for key, item in pairs:
                self.feed(key + item)
        else:
            members = sorted(self._sub(item, depth) for item in value)
            self.head(b"S", len(members))
            self.feed(b"".join(members))

    def _sub(self, value: Any, depth: int) -> bytes:
        """The digest of one value alone: what dict items and set members are sorted by."""
        if self.budget[0] < 0:
            return b"X"
        encoder = _Encoder(self.budget, self.path)
        encoder.value(value, depth)
        return encoder.digest()


def _float(value: float) -> bytes:
    if math.isnan(value):
        return b"nan"
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    return (value + 0.0).hex().encode()  # -0.0 + 0.0 is 0.0


def _type_name(value: Any) -> str:
    cls = type(value)
    module = getattr(cls, "__module__", None)
    name = getattr(cls, "__qualname__", None) or cls.__name__
    return f"{module}.{name}" if isinstance(module, str) and module else str(name)


def _repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # the type name alone then says what it was
        return ""
    return _ADDRESS.sub("", text[: _REPR + 40])[:_REPR]


def _call(
    args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None,
    only: Sequence[str] | None, param_names: Sequence[str] | None,
) -> tuple[list[Any], Mapping[Any, Any]]:  # fmt: skip
    """(positional, named) as the fingerprint sees them: with ``only``, just those names."""
    positional = list(args) if isinstance(args, (list, tuple)) else [] if args is None else [args]
    named: Mapping[Any, Any] = kwargs if isinstance(kwargs, Mapping) else {}
    if only is None:
        return positional, named
    names = list(param_names or ())
    picked: dict[str, Any] = {}
    for name in sorted({str(n) for n in ((only,) if isinstance(only, str) else only)}):
        if name in named:
            picked[name] = named[name]
        elif name in names and names.index(name) < len(positional):
            picked[name] = positional[names.index(name)]
        else:
            picked[name] = ABSENT
    return [], picked


def fingerprint(
    name: str,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
    only: Sequence[str] | None = None,
    param_names: Sequence[str] | None = None,
) -> str:
    """``fp_`` + 16 hex digits naming this task with these arguments (or only those named)."""
    encoder = _Encoder([_MAX_VALUES], set())
    encoder.text(b"n", name if isinstance(name, str) else _type_name(name))
    try:
        positional, named = _call(args, kwargs, only, param_names)
    except Exception:  # a hostile `only` or param_names: the arguments as given
        positional, named = [], {}
    encoder.feed(b"a" if only is None else b"o")
    encoder.value(positional)
    encoder.value(named)
    return PREFIX + encoder.digest()[:_DIGEST].hex()


class _Short(reprlib.Repr):
    """reprlib's bounded repr (long strings and lists cut, cycles ended), sized for a label."""

    def __init__(self) -> None:
        super().__init__()
        self.maxstring = self.maxother = 40
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = 5
        self.maxdict, self.maxlevel, self.maxlong = 4, 3, 24

    def repr_instance(self, x: Any, level: int) -> str:
        try:
            text = repr(x)
        except Exception:  # reprlib would show the object's address: noise in an alert
            return f"<{type(x).__name__}>"
        return text if len(text) <= self.maxother else text[: self.maxother - 1] + "…"


_SHORT = _Short()


def _shown(value: Any) -> str:
    if value is ABSENT:
        return "?"
    try:
        return printable(_SHORT.repr(value))  # repr escapes a str; printable an object's repr
    except Exception:
        return f"<{_type_name(value)}>"


def describe(
    name: str,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
    only: Sequence[str] | None = None,
    param_names: Sequence[str] | None = None,
    limit: int = 80,
) -> str:
    """``import_csv(file_id=555)``: the arguments :func:`fingerprint` uses, at most ``limit``
    characters (an argument ``only`` names but the call lacks shows as ``?``)."""
    label = printable((name if isinstance(name, str) else _type_name(name))[:limit])
    try:
        positional, named = _call(args, kwargs, only, param_names)
        parts = [_shown(v) for v in positional[:limit]]
        parts += [
            f"{printable(str(k)[:limit])}={_shown(v)}" for k, v in list(named.items())[:limit]
        ]
        text = f"{label}({', '.join(parts)})"
    except Exception:  # a hostile mapping of kwargs: the task's name still says something
        text = f"{label}(…)"
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"
