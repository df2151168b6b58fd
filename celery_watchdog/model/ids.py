"""Resolving an id from a unique prefix of it, as with git hashes; pure."""

from __future__ import annotations

from collections.abc import Sequence


class TaskLookupError(LookupError):
    """A task id or prefix that names no task, or more than one."""

    def __init__(self, message: str, candidates: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.candidates = list(candidates)


def unique_id(wanted: str, found: Sequence[str], what: str, missing: str = "") -> str:
    """The one id ``wanted`` names among ``found`` (the ids it is a prefix of): itself, or the
    only match, as with git hashes; else :class:`TaskLookupError` saying what went wrong."""
    found = sorted(found)
    if wanted in found or len(found) == 1:
        return wanted if wanted in found else found[0]
    if not found:
        raise TaskLookupError(missing or f"no {what} with id or prefix {wanted!r}")
    shown = ", ".join(found[:5]) + (", …" if len(found) > 5 else "")
    raise TaskLookupError(
        f"{what} id prefix {wanted!r} is ambiguous: it matches {shown}; give more characters",
        found,
    )
