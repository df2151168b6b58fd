"""What a failure says beyond its text, worked out where the exception still exists.

Runs once per failed or retried run, in the process that saw the exception (a task's child,
or the worker's main process for a time limit or a dead child): its plain reason bucket, whether
a retry chain gave up, and for a failure that will fail again with the same input (bad input,
a missing record, a code error) the input's fingerprint, so the same input sent again and again
can be quarantined.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery.exceptions import MaxRetriesExceededError

from ..model.fingerprint import describe, fingerprint
from ..model.reasons import classify, is_deterministic

if TYPE_CHECKING:  # the runtime is above this layer: it is handed in
    from ..runtime import Watchdog

REDACTED = "[redacted]"


def facts(
    wd: Watchdog, task: Any, exception: BaseException | None, *, final: bool
) -> dict[str, Any]:
    """``reason`` always; ``exhausted`` when a retry chain gave up (``final``: a failure, not a
    retry); ``fp``/``fp_label``/``q_after`` when the failure looks deterministic."""
    if exception is None:
        return {}
    reason = classify(exception, wd.settings.failure_reasons)
    out: dict[str, Any] = {"reason": reason}
    request = getattr(task, "request", None)
    if final and _gave_up(task, request, exception):
        out["exhausted"] = True
    if is_deterministic(reason) and request is not None:
        policy = wd.policy(task)
        params = wd.recorder.batcher.param_names(task)
        args, kwargs = request.args or (), request.kwargs or {}
        only = policy.fingerprint_args
        out["fp"] = fingerprint(task.name, args, kwargs, only=only, param_names=params)
        shown_args, shown_kwargs = _without_secrets(wd, args, kwargs, params)
        label = describe(task.name, shown_args, shown_kwargs, only=only, param_names=params)
        out["fp_label"] = wd.redactor.text(label, 200)
        out["q_after"] = policy.quarantine_after
    return out


def _gave_up(task: Any, request: Any, exception: BaseException) -> bool:
    """The last failure of a retry chain: Celery refused another retry, or none was left."""
    if isinstance(exception, MaxRetriesExceededError):
        return True
    retries = getattr(request, "retries", 0) or 0
    limit = getattr(task, "max_retries", None)
    return bool(retries) and limit is not None and retries >= limit


def _without_secrets(
    wd: Watchdog, args: Any, kwargs: Any, params: list[str]
) -> tuple[list[Any], dict[str, Any]]:
    """The arguments as a person may see them: values of secret-named parameters hidden."""
    secret = wd.redactor.is_secret
    try:
        shown_args = [
            REDACTED if i < len(params) and secret(params[i]) else value
            for i, value in enumerate(args)
        ]
        shown_kwargs = {k: REDACTED if secret(k) else v for k, v in dict(kwargs).items()}
    except Exception:  # odd arguments: the label says less, the fingerprint is unaffected
        return [], {}
    return shown_args, shown_kwargs
