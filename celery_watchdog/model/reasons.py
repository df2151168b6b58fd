"""Why a task failed, in a plain bucket a person can act on: ``"timeout"``, ``"bad input"``…

:func:`classify` reads an exception and its causes; :func:`classify_text` reads what is left
once only the recorded text ``"TypeName: message"`` remains (a failure seen by the worker's
main process, or read back from Redis). Both make the same decision, from class names only:
no import of requests, redis or Celery. Users put their own rules first with the
``watchdog_failure_reasons`` setting, read by :func:`parse_rules`.

Pure, cheap (it runs once per failure in the task's process) and it never raises: a message
of 50 MB, a ``__str__`` that raises or a cycle of causes still gets a bucket.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

TIMEOUT, CONNECTION, RATE_LIMIT, AUTH = "timeout", "connection", "rate limit", "auth"
BAD_INPUT, MISSING_RECORD, CODE_ERROR = "bad input", "missing record", "code error"
WORKER_LOST, TIME_LIMIT, OTHER = "worker lost", "time limit", "other"
BUCKETS = (
    TIMEOUT, CONNECTION, RATE_LIMIT, AUTH, BAD_INPUT, MISSING_RECORD, CODE_ERROR,
    WORKER_LOST, TIME_LIMIT, OTHER,
)  # fmt: skip
# Failures that come back with the same input: retrying them only repeats the failure.
DETERMINISTIC = frozenset({BAD_INPUT, MISSING_RECORD, CODE_ERROR})

MAX_RULES = 200
MAX_BUCKET = 40
_SCAN = 10_000  # characters of a message any regex sees: a 50 MB message costs microseconds
_DEPTH = 10  # exceptions of a chain looked at

# Built-in rules on one class name, first match wins: a name with two meanings
# (ConnectTimeout, ModuleNotFoundError, redis's AuthenticationError(ConnectionError)) takes the
# earlier bucket. Classes of the MRO are tried most specific first, so a subclass's own name
# beats its bases (FileNotFoundError before OSError, UnicodeDecodeError before ValueError).
_NAME_RULES = (
    (TIME_LIMIT, r"(?:Soft)?TimeLimitExceeded"),
    (WORKER_LOST, r"WorkerLostError"),
    (CODE_ERROR, r"AttributeError|NameError|UnboundLocalError|TypeError|IndexError"
        r"|ZeroDivisionError|AssertionError|NotImplementedError|ImportError|ModuleNotFoundError"
        r"|SyntaxError|IndentationError|TabError|RecursionError"),
    (TIMEOUT, r"timeout|.*(?:Timeout|TimeOut|TimedOut).*"),  # socket.timeout, as text
    (RATE_LIMIT, r".*(?:TooManyRequests|RateLimit|Ratelimit|Throttl).*"),
    (AUTH, r"PermissionError|.*(?:Authentication|AuthorizationError|Unauthori[sz]ed|Forbidden"
        r"|PermissionDenied|NotAuthenticated|InvalidToken|AccessDenied).*"),
    (CONNECTION, r"ConnectionRefusedError|ConnectionResetError|ConnectionAbortedError"
        r"|BrokenPipeError|OperationalError|gaierror|herror|.*(?:ConnectionError|ConnectError).*"),
    (MISSING_RECORD, r"KeyError|LookupError|FileNotFoundError|Http404|.*(?:DoesNotExist|NotFound"
        r"|NoResultFound).*"),
    (BAD_INPUT, r"ValueError|.*(?:ValidationError|DecodeError|DataError|CardError"
        r"|Invalid(?:Input|Data|Argument|Param|Value|Format|JSON|URL|Schema)).*"),
)  # fmt: skip
_NAMES = re.compile("|".join(f"(?P<r{i}>{rx})" for i, (_, rx) in enumerate(_NAME_RULES)))


def _status(code: int) -> str:
    # An HTTP status as a whole word: "HTTP 429" and "status=429", not "4290" or "0.429 s".
    return rf"(?<![\w.]){code}(?!\w|\.\d)"


# What the message says, tried in this order, only when class names said nothing.
_MESSAGE_RULES = tuple(
    (bucket, re.compile(rx, re.I))
    for bucket, rx in (
        (TIMEOUT, r"timed out|timeout"),
        (CONNECTION, r"connection (?:refused|reset|aborted)|name or service not known"
            r"|temporary failure in name resolution|nodename nor servname"),
        (RATE_LIMIT, _status(429) + r"|too many requests|rate[ _-]?limit"),
        (AUTH, _status(401) + "|" + _status(403) + r"|unauthori[sz]ed|forbidden"
            r"|invalid api[ _-]?key|authentication|permission denied"),
        (MISSING_RECORD, _status(404) + r"|not found|does not exist|no such "),
        (BAD_INPUT, r"invalid|malformed"),
    )
)  # fmt: skip

# "TypeName: message", "pkg.mod.TypeName(args…)" or a bare "TypeName".
_HEAD = re.compile(r"\s*((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*)(?:\s*:\s?|(?=\()|\s*$)")
# Exceptions a recorded message names in turn: "(Caused by NewConnectionError('…'))".
_NAMED_IN_TEXT = re.compile(r"(?<![\w.])((?:[a-z_]\w*\.)*[A-Z]\w*)(?=\(|: )")

Matcher = type[BaseException] | str | re.Pattern[str]


@dataclass(frozen=True)
class Rules:
    """The user's ``watchdog_failure_reasons``: (matcher, bucket) pairs, tried in order.

    A matcher is an exception class (matched with its subclasses), a bare class name (any
    class of the MRO), a dotted ``module.QualName`` or a message regex."""

    rules: tuple[tuple[Matcher, str], ...] = ()


@dataclass(frozen=True)
class _Link:
    """One exception of a chain, as far as rules can see it."""

    names: tuple[str, ...]  # __name__ of each class of the MRO, most specific first
    dotted: tuple[str, ...]  # module.qualname of the same classes, when known
    classes: tuple[type, ...]  # the MRO itself; empty when only the text is left
    message: str


def parse_rules(raw: object) -> Rules:
    """``watchdog_failure_reasons`` (a mapping, or pairs, of matcher -> bucket) as
    :class:`Rules`; ValueError naming the matcher or bucket that cannot be used."""
    if not raw:
        return Rules()
    if isinstance(raw, Mapping):
        pairs = list(raw.items())
    elif isinstance(raw, (list, tuple)):
        pairs = list(raw)
        for pair in pairs:
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                raise ValueError(f"watchdog_failure_reasons: {pair!r} is not a (matcher, bucket)")
    else:
        raise ValueError(
            "watchdog_failure_reasons must be a dict of matcher -> bucket, "
            f"not {type(raw).__name__}"
        )
    if len(pairs) > MAX_RULES:
        raise ValueError(f"watchdog_failure_reasons has {len(pairs)} rules, at most {MAX_RULES}")
    return Rules(tuple((_matcher(key), _bucket(key, bucket)) for key, bucket in pairs))


def _matcher(key: object) -> Matcher:
    where = f"watchdog_failure_reasons: matcher {key!r}"
    if isinstance(key, type):
        if not issubclass(key, BaseException):
            raise ValueError(f"{where} is a class but not an exception class")
        return key
    if isinstance(key, re.Pattern):
        if not isinstance(key.pattern, str) or key.search("") is not None:
            raise ValueError(f"{where} must be a str pattern that does not match ''")
        return key
    if not isinstance(key, str):
        raise ValueError(
            f"{where} must be an exception class, a class name, 're:<regex>' or a compiled "
            f"pattern, not {type(key).__name__}"
        )
    if key.startswith("re:"):
        try:
            pattern = re.compile(key[3:], re.I)
        except re.error as exc:
            raise ValueError(f"{where} is not a valid regular expression ({exc})") from exc
        if pattern.search("") is not None:  # it would put every failure in its bucket
            raise ValueError(f"{where} matches the empty message, so every failure")
        return pattern
    name = key.strip()
    if not name or not all(part.isidentifier() for part in name.split(".")):
        raise ValueError(
            f"{where} is not a class name ('CardError', 'stripe.error.CardError') nor 're:<regex>'"
        )
    return name


def _bucket(key: object, bucket: object) -> str:
    name = bucket.strip() if isinstance(bucket, str) else ""
    if not name or len(name) > MAX_BUCKET or not name.isprintable():
        raise ValueError(
            f"watchdog_failure_reasons: bucket {bucket!r} (for {key!r}) must be a non-empty "
            f"printable string of at most {MAX_BUCKET} characters"
        )
    return name


def classify(exc: BaseException, rules: Rules | None = None) -> str:
    """The bucket of a failure. Its chain is the exception, then its ``__cause__``, else its
    ``__context__`` (unless suppressed), else a Celery ``Retry``'s ``exc``: at most 10, each once.

    Precedence, first answer wins: user rules on each exception of the chain (outermost first,
    rules in their order); then built-in class-name rules, outermost first, so a specific class
    anywhere beats a plain wrapper (``RuntimeError("charge failed") from ReadTimeout()`` is a
    timeout) while a specific outermost class stands (a NameError raised while handling a
    timeout is a code error); then message patterns, outermost first; else ``"other"``."""
    try:
        return _decide(_chain(exc), rules)
    except Exception:  # a bucket is never worth a crashed task
        return OTHER


def classify_text(exception: str, rules: Rules | None = None) -> str:
    """:func:`classify` from the recorded ``"TypeName: message"``: the type name (dotted when
    recorded so) for name rules, the message for patterns, and the exceptions the message names
    (``"…(Caused by NewConnectionError(…))"``) in place of the lost chain. A type given as a
    class matches only itself here: the text does not tell its bases."""
    try:
        text = (exception if isinstance(exception, str) else str(exception))[:_SCAN]
        head = _HEAD.match(text)
        links = [_text_link(head.group(1), text[head.end() :]) if head else _Link((), (), (), text)]
        for match in _NAMED_IN_TEXT.finditer(text, head.end() if head else 0):
            if len(links) >= _DEPTH:
                break
            links.append(_text_link(match.group(1), ""))
        return _decide(links, rules)
    except Exception:
        return OTHER


def is_deterministic(bucket: str) -> bool:
    """Will it fail again with the same input (bad input, missing record, code error)?"""
    return bucket in DETERMINISTIC


def _decide(chain: list[_Link], rules: Rules | None) -> str:
    if rules is not None:
        for link in chain:
            for matcher, bucket in rules.rules:
                if _matches(matcher, link):
                    return bucket
    for link in chain:
        for name in link.names:
            found = _by_name(name)
            if found != OTHER:
                return found
    for link in chain:
        for bucket, pattern in _MESSAGE_RULES:
            if pattern.search(link.message):
                return bucket
    return OTHER


@lru_cache(maxsize=1024)  # a handful of class names fail over and over
def _by_name(name: str) -> str:
    match = _NAMES.fullmatch(name)
    if match is None or match.lastgroup is None:
        return OTHER
    return _NAME_RULES[int(match.lastgroup[1:])][0]


def _matches(matcher: Matcher, link: _Link) -> bool:
    if isinstance(matcher, re.Pattern):
        return bool(link.message) and matcher.search(link.message) is not None
    if isinstance(matcher, str):
        if "." not in matcher:
            return matcher in link.names
        if link.dotted:
            return matcher in link.dotted
        return bool(link.names) and matcher.rsplit(".", 1)[1] == link.names[0]
    if link.classes:
        return matcher in link.classes
    return (
        bool(link.names)
        and matcher.__name__ == link.names[0]
        and (not link.dotted or _dotted(matcher) == link.dotted[0])
    )


def _chain(exc: BaseException) -> list[_Link]:
    links: list[_Link] = []
    seen: set[int] = set()
    current: object = exc
    while isinstance(current, BaseException) and len(links) < _DEPTH and id(current) not in seen:
        seen.add(id(current))
        links.append(_exception_link(current))
        current = _next(current)
    return links


def _next(exc: BaseException) -> object:
    try:
        if exc.__cause__ is not None:
            return exc.__cause__
        if exc.__context__ is not None and not exc.__suppress_context__:
            return exc.__context__
        return getattr(exc, "exc", None)  # celery's Retry(exc=…) raised outside an except
    except Exception:
        return None


def _exception_link(exc: BaseException) -> _Link:
    mro = tuple(c for c in type(exc).__mro__ if c not in (object, BaseException, Exception))
    try:
        message = str(exc)[:_SCAN]
    except Exception:  # an exception whose __str__ raises is still classified by its type
        message = ""
    return _Link(tuple(c.__name__ for c in mro), tuple(_dotted(c) for c in mro), mro, message)


def _text_link(name: str, message: str) -> _Link:
    return _Link((name.rsplit(".", 1)[-1],), (name,) if "." in name else (), (), message)


def _dotted(cls: type) -> str:
    module = getattr(cls, "__module__", None)  # None, or anything, on a hand-made class
    return (
        f"{module}.{cls.__qualname__}" if isinstance(module, str) and module else cls.__qualname__
    )
