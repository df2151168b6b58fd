"""Flower's ``/api/tasks`` query over the documents of :mod:`.documents`: its filters
(``state``, ``taskname``, ``workername``; ours take globs and comma lists too), its received
range, its order (``sort_by``) and its search language (``search=…``).

The same language as Flower 2.2's ``flower/utils/search.py``, so a saved query selects the same
tasks: words are ANDed (``AND`` may be written), ``OR`` and parentheses group, ``"quoted
phrases"`` keep spaces; ``field:value`` limits a word to ``name``, ``state``, ``worker``,
``args``, ``kwargs`` or ``result``; ``state:`` and ``kwargs:key=value`` match exactly, every
other word is a case-insensitive substring of at least 3 characters (of the task id, name,
state, worker, args, kwargs and result together when unqualified). ``NOT`` and ``-word`` are
refused, as Flower refuses them. Arguments are searched as stored: redacted, so a secret can
neither be found nor confirmed by searching for it. Pure: no I/O.
"""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..model.redact import REDACTED

FIELDS = frozenset({"name", "state", "worker", "args", "kwargs", "result"})
MIN_SUBSTRING = 3
MAX_LENGTH = 2048
MAX_TOKENS = 128
MAX_DEPTH = 5

Doc = Mapping[str, Any]
Match = Callable[[Doc], bool]


class SearchSyntaxError(ValueError):
    """A query Flower would refuse too; the message says what and where."""


def matches(value: str | None, wanted: str | None) -> bool:
    """Exact, case-sensitive like Flower; a glob (``reports.*``) or comma list also works."""
    if wanted is None or wanted in ("", "All"):
        return True
    return any(fnmatch.fnmatchcase(value or "", pattern.strip()) for pattern in wanted.split(","))


def one_of(value: str, wanted: str | None) -> bool:
    if wanted is None or wanted in ("", "All"):
        return True
    return value.lower() in {w.strip().lower() for w in wanted.split(",")}


#: What ``sort_by`` accepts (``-`` first for descending): Flower's four, plus two of ours.
SORT_KEYS = ("name", "state", "received", "started", "timestamp", "runtime")
_NUMERIC_SORT = ("received", "started", "timestamp", "runtime")


def check_sort(sort_by: str | None) -> None:
    """ValueError for a ``sort_by`` Flower would refuse (it allows only :data:`SORT_KEYS`)."""
    if sort_by and sort_by.lstrip("-") not in SORT_KEYS:
        raise ValueError(f"sort_by: {sort_by!r} is not one of {', '.join(SORT_KEYS)}")


def _sort_key(doc: dict[str, Any], field: str, key: str) -> tuple[bool, Any, str]:
    """Flower's order: a task without the field first (ascending), numbers as numbers,
    words case-insensitively, the id last so equal values keep a stable order."""
    value = (
        received_at(doc.get("received"), doc.get("started"))
        if field == "received"
        else (doc.get(field))
    )
    if value is None:
        return (False, "", key)
    if field in _NUMERIC_SORT:
        try:
            return (True, float(value), key)
        except (TypeError, ValueError):
            return (True, 0.0, key)
    return (True, str(value).casefold(), key)


def received_at(received: float | None, started: float | None) -> float | None:
    """When the worker received the task. The records know it only for a redelivery; else
    the start stands in for it (later by the time the message waited in the worker's
    prefetch, usually milliseconds), so the received filters and sort still work."""
    return received if received is not None else started


def received_within(received: float | None, start: float | None, end: float | None) -> bool:
    """Flower's range: a task never received passes; the start is inclusive, so is the end."""
    if received is None:
        return True
    return (start is None or received >= start) and (end is None or received <= end)


def sort_entries(entries: list[tuple[str, dict[str, Any]]], sort_by: str) -> None:
    """Sort ``(key, task document)`` pairs in place as Flower's ``sort_by`` does."""
    field = sort_by.lstrip("-")
    entries.sort(key=lambda e: _sort_key(e[1], field, e[0]), reverse=sort_by.startswith("-"))


# -- search --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # TERM | AND | OR | LPAREN | RPAREN | EOF
    value: str
    position: int


def _tokens(query: str) -> list[_Token]:
    out: list[_Token] = []
    i, n = 0, len(query)
    while i < n:
        if query[i].isspace():
            i += 1
            continue
        start = i
        if query[i] in "()":
            out.append(_Token("LPAREN" if query[i] == "(" else "RPAREN", query[i], start))
            i += 1
        else:
            chars: list[str] = []
            quoted = in_quote = False
            while i < n:
                c = query[i]
                if c == "\\" and i + 1 < n and query[i + 1] in '"\\':
                    chars.append(query[i + 1])
                    i += 2
                    continue
                if c == '"':
                    quoted, in_quote = True, not in_quote
                    i += 1
                    continue
                if not in_quote and (c.isspace() or c in "()"):
                    break
                chars.append(c)
                i += 1
            if in_quote:
                raise SearchSyntaxError(f"unterminated quoted phrase at position {start}")
            word = "".join(chars)
            if not word:
                raise SearchSyntaxError(f"empty search term at position {start}")
            if not quoted and word == "NOT":
                raise SearchSyntaxError(f"NOT is not supported (position {start})")
            kind = word if not quoted and word in ("AND", "OR") else "TERM"
            out.append(_Token(kind, word, start))
        if len(out) > MAX_TOKENS:
            raise SearchSyntaxError(f"the query has more than {MAX_TOKENS} terms")
    out.append(_Token("EOF", "", n))
    return out


def _fold(value: Any) -> str:
    return "" if value is None else str(value).casefold()


def _kwargs_pairs(value: Any) -> frozenset[str]:
    mapping = value if isinstance(value, Mapping) else None
    if mapping is None and isinstance(value, str):
        # Our kwargs are previews: a redacted value is a bare marker, not a literal; quoting
        # it lets the other pairs still be found.
        text = value.replace(f": {REDACTED}", f": {REDACTED!r}")
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            parsed = None
        mapping = parsed if isinstance(parsed, dict) else None
    return frozenset(f"{_fold(k)}={_fold(v)}" for k, v in (mapping or {}).items())


def _term(token: _Token) -> Match:
    field, value = None, token.value
    if ":" in value:
        name, rest = value.split(":", 1)
        if name.casefold() in FIELDS:
            field, value = name.casefold(), rest
    if field is None and value.startswith("-"):
        raise SearchSyntaxError(f"negation with '-' is not supported (position {token.position})")
    if not value:
        raise SearchSyntaxError(f"{field}: needs a value (position {token.position})")
    wanted = value.casefold()
    if field == "state":
        return lambda doc: _fold(doc.get("state")) == wanted
    if field == "kwargs" and "=" in wanted:
        key, item = wanted.split("=", 1)
        pair = f"{key.strip()}={item.strip()}"
        return lambda doc: pair in _kwargs_pairs(doc.get("kwargs"))
    if len(wanted.strip()) < MIN_SUBSTRING:
        raise SearchSyntaxError(
            f"a search word needs at least {MIN_SUBSTRING} characters (position {token.position})"
        )
    if field is not None:
        return lambda doc: wanted in _fold(doc.get(field))
    keys = ("uuid", "name", "state", "worker", "args", "kwargs", "result")
    return lambda doc: wanted in "\0".join(_fold(doc.get(k)) for k in keys)


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens, self.i = tokens, 0

    @property
    def current(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def parse(self) -> Match:
        if self.current.kind == "EOF":
            return lambda doc: True
        expr = self.any_of(0)
        if self.current.kind != "EOF":
            raise SearchSyntaxError(f"unexpected {self.current.value!r} at position "
                                    f"{self.current.position}")  # fmt: skip
        return expr

    def any_of(self, depth: int) -> Match:
        options = [self.all_of(depth)]
        while self.current.kind == "OR":
            op = self.take()
            if self.current.kind in ("EOF", "RPAREN", "AND", "OR"):
                raise SearchSyntaxError(f"OR must be followed by a search term ({op.position})")
            options.append(self.all_of(depth))
        return options[0] if len(options) == 1 else lambda d: any(m(d) for m in options)

    def all_of(self, depth: int) -> Match:
        parts = [self.primary(depth)]
        while self.current.kind not in ("EOF", "RPAREN", "OR"):
            if self.current.kind == "AND":
                op = self.take()
                if self.current.kind in ("EOF", "RPAREN", "AND", "OR"):
                    raise SearchSyntaxError(
                        f"AND must be followed by a search term ({op.position})"
                    )
            parts.append(self.primary(depth))
        return parts[0] if len(parts) == 1 else lambda d: all(m(d) for m in parts)

    def primary(self, depth: int) -> Match:
        token = self.current
        if token.kind == "LPAREN":
            if depth >= MAX_DEPTH:
                raise SearchSyntaxError(f"groups nest deeper than {MAX_DEPTH} levels")
            self.take()
            if self.current.kind == "RPAREN":
                raise SearchSyntaxError(f"empty group at position {token.position}")
            expr = self.any_of(depth + 1)
            if self.current.kind != "RPAREN":
                raise SearchSyntaxError(f"missing ')' for position {token.position}")
            self.take()
            return expr
        if token.kind != "TERM":
            raise SearchSyntaxError(f"expected a search term at position {token.position}")
        self.take()
        return _term(token)


@lru_cache(maxsize=256)
def compile_search(query: str) -> Match:
    """A predicate over task documents, or :class:`SearchSyntaxError`."""
    query = query.strip()
    if len(query) > MAX_LENGTH:
        raise SearchSyntaxError(f"the query is longer than {MAX_LENGTH} characters")
    return _Parser(_tokens(query)).parse()
