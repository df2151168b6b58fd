"""Turn what a task gives or says into a short, safe text a person may read and Redis may keep.

Secrets are recognised twice: by name (an argument or key called ``password``, nested too,
becomes ``[redacted]``) and by value (:data:`VALUE_RULES`: URL credentials, bearer and basic
tokens, JWTs, well-known key shapes, ``password=…`` pairs in free text, plus the configured
``watchdog_redact_patterns``). Long values are cut with a marker; bytes, huge or hostile
objects get a bounded, safe repr. Nothing here may raise: a preview is never worth a crashed
worker or command.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .humanize import printable
from .storable import clean

REDACTED = "[redacted]"
_MAX_ITEMS = 20
_MAX_DEPTH = 4
_MAX_STR = 80
_SCAN = 64 * 1024  # free text is cut to this before any regex runs: a 50 MB message costs ms
_TAIL = 4096  # a cut inside a token (a URL, a key) drops that token whole when it is this short

# No rule removes a lone backslash (a value stops before one, a quoted value takes escapes
# whole), so text that is JSON (a stack) stays JSON once scrubbed.
# A token starts where no token character precedes it. Every pattern below begins with a
# literal or this guard, and each of its repeats stops at a character the next part needs, so
# a scan is linear in the text: no input makes these regexes backtrack catastrophically.
_START = r"(?<![A-Za-z0-9_\-])"
_SECRET_WORDS = (
    r"(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|access[_-]?key"
    r"|private[_-]?key|credentials?)"
)
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|sig|auth|cred|session|cookie", re.I)
_AUTH_NAME = re.compile(r"auth|cred|login|userpass", re.I)


def _token_after_scheme(m: re.Match[str]) -> str:
    # "Bearer token expired" is prose, "Bearer 9f8e…" is a credential: a plain lower-case
    # word shorter than a real token is left alone.
    token = m.group(2)
    if len(token) < 20 and token.isalpha() and token.islower():
        return m.group(0)
    return m.group(1) + REDACTED


def _query_value(m: re.Match[str]) -> str:
    return m.group(1) + REDACTED if _SECRET_PARAM.search(m.group(1)) else m.group(0)


def _pair_value(m: re.Match[str]) -> str:
    # Quotes stay as they were (also escaped ones, inside JSON): only what they held goes.
    value = m.group(2)
    quote = value[:2] if value[0] == "\\" else value[0] if value[0] in "'\"" else ""
    closed = bool(quote) and len(value) > len(quote) and value.endswith(quote)
    return m.group(1) + quote + REDACTED + (quote if closed else "")


# Each rule: the substrings (looked for in the lower-cased text when the flag says so) without
# which it cannot match, its pattern and its replacement. The substring test is what keeps
# the common case cheap: most values contain none of them and no regex runs at all.
Replacement = str | Callable[[re.Match[str]], str]
Rule = tuple[tuple[str, ...], bool, re.Pattern[str], Replacement]
VALUE_RULES: tuple[Rule, ...] = (
    # PEM private keys: the base64 body (it holds no "-") goes, the armour lines stay.
    (
        ("-----BEGIN",), False,
        re.compile(r"(-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----)[^-]{1,16384}"),
        r"\1" + REDACTED,
    ),
    # scheme://user:password@host -> the user stays, the password goes (the last "@" of the
    # authority ends it, as urlsplit reads it).
    (
        ("://",), False,
        re.compile(r"(://[^\s:/?#@'\"]{0,256}:)[^\s/?#'\"]{1,512}(?=@)"),
        r"\1" + REDACTED,
    ),
    # ?password=…&access_token=… in URLs and query strings.
    (
        ("=",), False,
        re.compile(r"([?&;][A-Za-z0-9_.\-]{0,64}=)(?!\[redacted\])[^&#\s'\"\\]{1,1024}"),
        _query_value,
    ),
    (
        ("authorization",), True,
        re.compile(
            r"(authorization[\"']?\s{0,8}[:=]\s{0,8}[\"']?"
            r"(?:(?:bearer|basic|token|digest|apikey|key)\s{1,8})?)"
            r"(?!\[redacted\]|(?:bearer|basic|token|digest|apikey|key)\s{1,8}\[redacted\])"
            r"[^\s\"',;\\]{1,4096}",
            re.I,
        ),
        r"\1" + REDACTED,
    ),
    (
        ("bearer", "basic"), True,
        re.compile(_START + r"((?:bearer|basic)\s{1,8})([A-Za-z0-9._~+/\-]{1,4096}=*)", re.I),
        _token_after_scheme,
    ),
    (("eyJ",), False, re.compile(_START + r"eyJ[\w\-]{2,}\.[\w\-]{2,}\.[\w\-]*"), REDACTED),
    (
        ("_live_", "_test_", "whsec_", "xox", "gh", "glpat-", "AIza"), False,
        re.compile(
            _START + r"((?:sk|rk|pk)_(?:live|test)_|whsec_|xox[abposr]-|gh[pousr]_|github_pat_"
            r"|glpat-|AIza)[A-Za-z0-9_\-]{8,}"
        ),
        r"\1" + REDACTED,
    ),
    (
        ("AKIA", "ASIA"), False,
        re.compile(r"(?<![A-Z0-9])(AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"),
        r"\1" + REDACTED,
    ),
    # password=…, "secret": "…", aws_secret_access_key = … in free text and reprs; an opening
    # quote without its closing one (a cut) still hides the rest.
    (
        ("pass", "pwd", "secret", "token", "key", "credential"), True,
        re.compile(
            r"(" + _SECRET_WORDS + r"[\w\-]{0,30}\\?[\"']?\s{0,4}[:=]\s{0,4})(?!\[redacted\])"
            r"(\"(?:[^\"\\\n]|\\.){0,1024}\"?|'(?:[^'\\\n]|\\.){0,1024}'?"
            r"|\\[\"'][^\"'\\\n]{0,1024}(?:\\[\"'])?|[^\s\"',;&)}\]\\]{1,1024})",
            re.I,
        ),
        _pair_value,
    ),
)  # fmt: skip

# What every rule needs, in one case-sensitive search (cheaper than the needles one by one):
# the one test a value without any of them pays. Rules folding case all need ":" or "=",
# except bearer and basic tokens, matched here in their two usual spellings.
_MAYBE = re.compile(
    r"[:=]|eyJ|_live_|_test_|whsec_|xox|gh[pousr]_|github_pat_|glpat-|AIza|AKIA|ASIA"
    r"|-----BEGIN|[Bb](?:earer|EARER|asic|ASIC)"
)


def _window(text: str, size: int) -> str:
    """The first ``size`` characters; a token the cut went through is dropped whole, so no
    rule sees half a secret (``…://admin:hunt``) that it could no longer recognise."""
    if len(text) <= size:
        return text
    head = text[:size]
    start = max(0, size - _TAIL)
    cut = max(head.rfind(" ", start), head.rfind("\n", start))
    return head[: cut + 1] if cut >= 0 else head


class Redactor:
    """Previews arguments and cleans free text with the configured secret names and patterns."""

    def __init__(
        self, keys: Iterable[str], max_chars: int = 200, patterns: Iterable[str] = ()
    ) -> None:
        self.keys = tuple(k.lower() for k in keys)
        self.max_chars = max_chars
        self.patterns = tuple(re.compile(p) for p in patterns)
        self._secret: dict[str, bool] = {}  # argument names repeat: decide each once
        self._pair: dict[str, bool] = {}

    def is_secret(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        known = self._secret.get(name)
        if known is None:
            lowered = name.lower()
            known = any(key in lowered for key in self.keys)
            if len(self._secret) < 10000:
                self._secret[name] = known
        return known

    def is_auth_pair(self, name: object, value: Any) -> bool:
        """``auth=("user", "pw")``: a (user, password) pair under an auth-like name."""
        if not (isinstance(value, (tuple, list)) and len(value) == 2 and isinstance(name, str)):
            return False
        known = self._pair.get(name)
        if known is None:
            known = bool(_AUTH_NAME.search(name))
            if len(self._pair) < 10000:
                self._pair[name] = known
        return known and isinstance(value[0], str)

    def scrub(self, text: str) -> str:
        """``text`` with every secret value the rules recognise replaced (no length cap)."""
        for custom in self.patterns:
            text = custom.sub(REDACTED, text)
        if _MAYBE.search(text) is None:
            return text
        lowered = ""  # the lower-cased text, made when a case-folding rule first needs it
        for needles, folded, pattern, replacement in VALUE_RULES:
            if folded and not lowered:
                lowered = text.lower()
            haystack = lowered if folded else text
            for needle in needles:
                if needle in haystack:
                    scrubbed = pattern.sub(replacement, text)
                    if scrubbed != text:
                        text, lowered = scrubbed, ""
                    break
        return text

    def text(self, value: object, limit: int | None = None) -> str:
        """Free text (an exception, a traceback, a step name): secrets out, storable, capped."""
        try:
            raw = value if isinstance(value, str) else str(value)
            scan = _SCAN if limit is None else min(_SCAN, max(2 * limit, limit + _TAIL))
            head = _window(raw, scan)
            text = self.scrub(clean(head))
            cap = scan if limit is None else limit
            if len(text) > cap or len(head) < len(raw):
                text = text[: max(0, cap - 1)] + "…"
            return text
        except Exception:
            return "<unrepresentable text>"

    def args(self, args: Any, param_names: Iterable[str] = ()) -> str:
        """Preview positional args; names (from the task signature) let positionals be redacted."""
        try:
            names = list(param_names)
            items = list(args) if isinstance(args, (list, tuple)) else [args]
            parts = [
                self._named(names[i], v, 0) if i < len(names) else self._value(v, 0)
                for i, v in enumerate(items[:_MAX_ITEMS])
            ]
            if len(items) > _MAX_ITEMS:
                parts.append(f"…+{len(items) - _MAX_ITEMS} more")
            return self._cut("(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")")
        except Exception:
            return "<unrepresentable args>"

    def kwargs(self, kwargs: Any) -> str:
        try:
            return self._cut(self._value(kwargs, 0))
        except Exception:
            return "<unrepresentable kwargs>"

    def value(self, value: Any) -> str:
        """Preview any single value (a result, a detail) under the same rules."""
        try:
            return self._cut(self._value(value, 0))
        except Exception:
            return "<unrepresentable>"

    def mapping(self, values: Mapping[str, Any]) -> dict[str, str]:
        """Redact a flat mapping of names to values (alert context, heartbeat details)."""
        out: dict[str, str] = {}
        for key, val in list(values.items())[:_MAX_ITEMS]:
            try:
                shown = self._named(key, val, 0)
            except Exception:
                shown = "<unrepresentable>"
            out[printable(self.scrub(str(key)[:_MAX_STR]))] = self._cut(shown)
        return out

    def _cut(self, text: str) -> str:
        if len(text) <= self.max_chars:
            return text
        return text[: self.max_chars - 1] + "…"

    def _named(self, name: object, value: Any, depth: int) -> str:
        """A value under a name: the pair rule first (it keeps the user), then the name rule."""
        if isinstance(value, (tuple, list)) and self.is_auth_pair(name, value):
            open_, close = ("[", "]") if isinstance(value, list) else ("(", ")")
            return f"{open_}{self._value(value[0], depth + 1)}, {REDACTED!r}{close}"
        if self.is_secret(name):
            return REDACTED
        return self._value(value, depth)

    def _string(self, value: str) -> str:
        if len(value) > _MAX_STR:
            shown = self.scrub(clean(_window(value, 4 * _MAX_STR)))[:_MAX_STR]
            return repr(shown) + f"…(+{len(value) - _MAX_STR} chars)"
        # The common case (a word, a number, an id) skips the rules: without ":", "=", a space,
        # "_", "-" or "." only the AKIA/AIza key shapes could match, and they need an "A".
        plain = value.isalnum() and "A" not in value
        if self.patterns or not (plain or _MAYBE.search(value) is None):
            value = self.scrub(value)
        return repr(value)  # repr escapes controls and lone surrogates

    def _value(self, value: Any, depth: int) -> str:
        if value is None or isinstance(value, (bool, int, float)):
            return repr(value)
        if isinstance(value, str):
            return self._string(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return f"<{type(value).__name__} len={len(value)}>"
        if depth >= _MAX_DEPTH:
            return "…"
        if isinstance(value, Mapping):
            parts = []
            for i, (key, val) in enumerate(value.items()):
                if i >= _MAX_ITEMS:
                    parts.append(f"…+{len(value) - _MAX_ITEMS} more")
                    break
                shown = self._named(key, val, depth + 1)
                parts.append(f"{self._value(key, depth + 1)}: {shown}")
            return "{" + ", ".join(parts) + "}"
        if isinstance(value, (list, tuple, set, frozenset)):
            seq = list(value)[: _MAX_ITEMS + 1] if isinstance(value, (set, frozenset)) else value
            parts = [self._value(v, depth + 1) for v in seq[:_MAX_ITEMS]]
            if len(value) > _MAX_ITEMS:
                parts.append(f"…+{len(value) - _MAX_ITEMS} more")
            open_, close = ("[", "]") if isinstance(value, list) else ("(", ")")
            if isinstance(value, (set, frozenset)):
                open_, close = "{", "}"
            return open_ + ", ".join(parts) + close
        return self._safe_repr(value)

    def _safe_repr(self, value: Any) -> str:
        try:
            text = repr(value)
        except Exception:
            return f"<{type(value).__name__} (repr failed)>"
        if not isinstance(text, str):
            return f"<{type(value).__name__}>"
        # An object's own repr is free text: it may print a DSN or hold escapes and surrogates.
        text = printable(self.scrub(_window(text, 4 * _MAX_STR)))
        return text if len(text) <= _MAX_STR else text[:_MAX_STR] + "…"


_PLAIN = Redactor(())


def scrub(value: object, limit: int | None = None) -> str:
    """:meth:`Redactor.text` with the built-in rules only (no configured names or patterns)."""
    return _PLAIN.text(value, limit)
