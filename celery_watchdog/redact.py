"""Turn task arguments into a short, safe text a person may read.

Secrets (by argument or key name, nested too) become ``[redacted]``; long values and long
lists are cut with a marker; bytes, huge or hostile objects get a bounded, safe repr. Nothing
here may raise: a preview is never worth a crashed worker or command.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[redacted]"
_MAX_ITEMS = 20
_MAX_DEPTH = 4
_MAX_STR = 80


class Redactor:
    """Previews arguments with the configured secret key names and size limits."""

    def __init__(self, keys: Iterable[str], max_chars: int = 200) -> None:
        self.keys = tuple(k.lower() for k in keys)
        self.max_chars = max_chars
        self._secret: dict[str, bool] = {}  # argument names repeat: decide each once

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

    def args(self, args: Any, param_names: Iterable[str] = ()) -> str:
        """Preview positional args; names (from the task signature) let positionals be redacted."""
        try:
            names = list(param_names)
            items = list(args) if isinstance(args, (list, tuple)) else [args]
            parts = [
                REDACTED if i < len(names) and self.is_secret(names[i]) else self._value(v, 0)
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
            out[str(key)[:_MAX_STR]] = REDACTED if self.is_secret(key) else self.value(val)
        return out

    def _cut(self, text: str) -> str:
        if len(text) <= self.max_chars:
            return text
        return text[: self.max_chars - 1] + "…"

    def _value(self, value: Any, depth: int) -> str:
        if value is None or isinstance(value, (bool, int, float)):
            return repr(value)
        if isinstance(value, str):
            if len(value) > _MAX_STR:
                return repr(value[:_MAX_STR]) + f"…(+{len(value) - _MAX_STR} chars)"
            return repr(value)
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
                shown = REDACTED if self.is_secret(key) else self._value(val, depth + 1)
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
        return _safe_repr(value)


def _safe_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__} (repr failed)>"
    if not isinstance(text, str):
        return f"<{type(value).__name__}>"
    return text if len(text) <= _MAX_STR else text[:_MAX_STR] + "…"
