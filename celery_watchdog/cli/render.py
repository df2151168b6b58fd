"""Human output of the status commands: the documents of :mod:`..views`, as text.

Every renderer takes a document and the ``now`` it was built with (the Redis server's clock),
so a relative time printed here is measured on the same clock as the facts it describes.
Whatever a task controls (names, steps, errors, arguments) is printed with the characters a
terminal would act on escaped: each cell through ``cut``/``table``/``fields``, and each whole
text through ``printable`` once more, so a value formatted some other way cannot slip through.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from ..model.humanize import (
    NONE,
    ago,
    cut,
    duration,
    fields,
    percent,
    printable,
    progress_bar,
    table,
    timestamp,
)

SHORT_ID = 8  # like a short git hash: `watchdog task` accepts any unique prefix
TASK_COLUMNS = ("ID", "NAME", "STATE", "HEALTH", "WORKER", "STARTED", "RUNTIME", "PROGRESS",
                "DETAIL")  # fmt: skip
PROBLEMS = ("stuck", "lost", "poison", "overtime", "duplicate", "slow")


def _short_id(key: str) -> str:
    task_id, _, copy = key.partition("#")
    return task_id[:SHORT_ID] + (f"#{copy}" if copy else "")


def _health(task: Mapping[str, Any]) -> str:
    # A finished run that is merely "ok" has nothing to add to its Celery state.
    wd = task["watchdog"]
    return wd["health"] if wd["running"] or wd["health"] != "ok" else NONE


def _detail(task: Mapping[str, Any], now: float) -> str:
    wd = task["watchdog"]
    if wd["health"] != "ok":
        return str(wd["reason"] or wd["health"])
    if task["exception"]:
        return str(task["exception"])
    if wd["running"]:
        parts = []
        if wd["step"]:
            parts.append(f"step {wd['step']!r}")
        if wd["last_heartbeat"] is not None:
            parts.append(f"heartbeat {ago(wd['last_heartbeat'], now)}")
        return ", ".join(parts)
    return ""


def tasks_text(doc: Mapping[str, Mapping[str, Any]], now: float, shown: int | None = None) -> str:
    if not doc:
        return "No tasks recorded (none ran since the watchdog was installed, or none match)."
    items = list(doc.items())
    rows = []
    for key, task in items[:shown]:
        wd = task["watchdog"]
        runtime = wd["elapsed"] if wd["running"] else task["runtime"]
        rows.append([
            _short_id(key),
            cut(task["name"], 40),
            task["state"],
            _health(task),
            cut(task["worker"], 32),
            ago(task["started"] or task["received"], now),
            duration(runtime),
            progress_bar(wd["processed"], wd["total"]),
            cut(_detail(task, now), 70),
        ])  # fmt: skip
    text = _tasks_summary(doc) + "\n\n" + table(TASK_COLUMNS, rows)
    if shown is not None and len(items) > shown:
        text += f"\n… {len(items) - shown} more; use --limit N or filters to see them."
    return printable(text)


def _tasks_summary(doc: Mapping[str, Mapping[str, Any]]) -> str:
    running = [t for t in doc.values() if t["watchdog"]["running"]]
    problems = Counter(t["watchdog"]["health"] for t in running if t["watchdog"]["health"] != "ok")
    parts = [f"{n} {h}" for h in PROBLEMS if (n := problems[h])]
    line = f"{len(running)} running" + (f" ({', '.join(parts)})" if parts else "")
    return line + f", {len(doc) - len(running)} finished"


def task_text(task: Mapping[str, Any], now: float) -> str:
    wd = task["watchdog"]

    def when(ts: float | None) -> str | None:
        return None if ts is None else f"{ago(ts, now)} ({timestamp(ts)})"

    health = wd["health"] + (f": {wd['reason']}" if wd["reason"] else "")
    step = wd["step"]
    if step and wd["step_started"] is not None:
        step += f" (for {duration(now - wd['step_started'])}"
        step += f", timeout {duration(wd['step_timeout'])})" if wd["step_timeout"] else ")"
    runtime = wd["elapsed"] if wd["running"] else task["runtime"]
    ended = next(
        (f"{k} {when(task[k])}" for k in ("succeeded", "failed", "revoked", "retried") if task[k]),
        None,
    )
    pairs: list[tuple[str, object]] = [
        ("Task", f"{task['uuid']}  {task['name']}"),
        ("State", task["state"]),
        ("Health", health),
        ("Worker", _worker(task["worker"], wd["pid"])),
        ("Queue", wd["queue"]),
        ("Args", task["args"]),
        ("Kwargs", task["kwargs"]),
        ("Received", when(task["received"])),
        ("Started", when(task["started"])),
        ("Ended", ended),
        ("Runtime", duration(runtime) if runtime is not None else None),
        ("Heartbeat", when(wd["last_heartbeat"])),
        ("Progress at", when(wd["last_progress"]) if wd["running"] else None),
        ("Step", step),
        ("Progress", progress_bar(wd["processed"], wd["total"])),
        ("CPU", None if wd["cpu"] is None else duration(wd["cpu"])),
        ("Deliveries", wd["deliveries"] or None),
        ("Retries", task["retries"] or None),
        ("ETA", task["eta"]),
        ("Expires", task["expires"]),
        ("Parent", task["parent_id"]),
        ("Root", task["root_id"] if task["root_id"] != task["uuid"] else None),
        ("Owner", wd["owner"]),
        ("Runbook", wd["runbook"]),
        ("Result", task["result"]),
        *_failure_pairs(wd.get("failure"), task["exception"], when),
        ("Traceback", task["traceback"]),
    ]
    text = fields(pairs)
    runs = wd.get("runs") or []
    if len(runs) > 1:
        rows = [
            [r["worker"], r["pid"], r["health"], ago(r["started"], now),
             progress_bar(r["processed"], r["total"]), cut(r["reason"], 60)]
            for r in runs
        ]  # fmt: skip
        text += f"\n\nRunning {len(runs)} times at once:\n"
        text += table(["WORKER", "PID", "HEALTH", "STARTED", "PROGRESS", "REASON"], rows)
    return printable(text)


def _worker(hostname: str | None, pid: int | None) -> str | None:
    if hostname is None:
        return None
    return hostname + (f" (pid {pid})" if pid else "")


def workers_text(doc: Mapping[str, Mapping[str, Any]], now: float) -> str:
    if not doc:
        return "No workers have reported in the last day (is a worker running with the watchdog?)."
    rows, active = [], []
    for host, w in doc.items():
        wd = w["watchdog"]
        rows.append([
            host,
            "online" if wd["online"] else "offline",
            w["stats"]["pid"],
            wd["pool"],
            w["stats"]["pool"]["max-concurrency"],
            len(w["active"]),
            cut(", ".join(q["name"] for q in w["active_queues"]), 40) or NONE,
            ago(wd["last_seen"], now),
        ])  # fmt: skip
        for a in w["active"]:
            cpu = a["watchdog"]["cpu"]
            active.append([
                a["id"][:SHORT_ID], cut(a["name"], 40), host, a["worker_pid"],
                ago(a["time_start"], now), NONE if cpu is None else duration(cpu),
                cut(a["args"], 40),
            ])  # fmt: skip
    headers = ["WORKER", "STATUS", "PID", "POOL", "CONCURRENCY", "ACTIVE", "QUEUES", "LAST SEEN"]
    text = table(headers, rows)
    if active:
        text += "\n\nActive tasks:\n" + table(
            ["ID", "NAME", "WORKER", "PID", "STARTED", "CPU", "ARGS"], active
        )
    errors = [{"source": host, "kind": kind, **info}
              for host, w in doc.items() for kind, info in w["watchdog"].get("errors", {}).items()]
    if errors:
        text += "\n\n" + "\n".join(_errors_lines(errors, now, limit=20))
    return printable(text)


def _errors_lines(errors: Any, now: float, limit: int = 5) -> list[str]:
    """``watchdog errors: 12 flush errors on celery@web-1 in the last hour, last: …``."""
    lines = []
    for e in list(errors)[:limit]:
        count = e.get("count_1h") or 0
        when = f"{count} {e['kind']} error{'s' if count != 1 else ''} in the last hour"
        if not count:
            when = f"{e['kind']} errors, the last {ago(e.get('last_at'), now)}"
        lines.append(f"WATCHDOG ERRORS: {when} on {e['source']}, last: {cut(e.get('last'), 120)}")
    return lines


def _failure_pairs(
    failure: Mapping[str, Any] | None, exception: str | None, when: Any
) -> list[tuple[str, object]]:
    """The last error with its reason bucket; a retry chain's first error when it differs."""
    if not failure:
        return [("Exception", exception)]
    reason = failure.get("reason")
    last = f"{exception}  [{reason}]" if exception and reason else exception
    pairs: list[tuple[str, object]] = [("Exception", last)]
    first = failure.get("first_error")
    if first and first != exception:
        bucket = failure.get("first_reason")
        at = when(failure.get("first_error_at"))
        pairs.append(("First error", f"{first}" + (f"  [{bucket}]" if bucket else "")
                      + (f", {at}" if at else "")))  # fmt: skip
    return pairs


def _normal_cell(normal: Mapping[str, Any] | None) -> str:
    """``"40/h, 2% fail, p95 3s"``: a task name at this hour of the week, the weeks before."""
    if not normal:
        return NONE
    parts = [f"{normal['runs_per_hour']:.0f}/h"]
    if normal.get("failure_rate") is not None:
        parts.append(f"{percent(1 - normal['failure_rate'])} ok")
    if normal.get("runtime_p95") is not None:
        parts.append(f"p95 {duration(normal['runtime_p95'])}")
    return ", ".join(parts)


def status_text(doc: Mapping[str, Any], now: float) -> str:
    workers = doc["workers"]
    head = f"Workers: {workers['online']} online, {workers['offline']} offline"
    watch = doc.get("watchdog") or {}
    if watch.get("blind"):
        head += f"\nWATCHDOG BLIND: {watch['blind']}"
    elif watch.get("last_pass"):
        head += f"\nMonitor: last pass {ago(watch['last_pass'], now)}"
    if watch.get("dead_letters"):
        head += f"; {watch['dead_letters']} dead-lettered (celery watchdog dlq list)"
    if watch.get("open_incidents"):
        head += f"\nIncidents: {watch['open_incidents']} open (celery watchdog incidents)"
    if watch.get("doubt"):
        head += f"\nWAITING FOR WORKERS: {watch['doubt']} (no run is judged lost or stuck now)"
    for line in _errors_lines(watch.get("errors") or (), now):
        head += "\n" + line
    if watch.get("unreadable"):
        head += f"\nUNREADABLE RECORDS: {watch['unreadable']} skipped (see the worker logs)"
    for ch in watch.get("alert_channels") or ():
        if not ch["ok"]:
            head += (
                f"\nALERT CHANNEL FAILING: {ch['channel']}: {ch['last_error']} "
                f"({ago(ch['last_error_at'], now)}; {ch['failed']} failed, "
                f"{ch['delivered']} delivered)"
            )
    for pz in doc.get("paused") or ():
        until = f" until {timestamp(pz['until'])}" if pz.get("until") else ""
        head += (f"\nPAUSED: {pz['target']} by {pz.get('by') or '?'}{until}, "
                 f"{pz.get('held', 0)} held (celery watchdog resume)")  # fmt: skip
    for q in (doc.get("queues") or {}).values():
        if q.get("health") in ("backlog", "stalled"):
            head += f"\nQUEUE {q['health'].upper()}: {q.get('summary')}"
    if not doc["tasks"]:
        return printable(head + "\n\nNo tasks recorded yet.")
    rows = []
    for name, s in doc["tasks"].items():
        counts = s["health"]
        other = ", ".join(
            f"{n} {h}" for h in ("overtime", "lost", "poison", "duplicate") if (n := counts[h])
        )
        error = None
        if s["last_error"]:
            error = f"{ago(s['last_failure'], now)}: {s['last_error']}"
        if s.get("top_reason"):  # the most frequent bucket of the day, with its count
            n = (s.get("reasons_24h") or {}).get(s["top_reason"], 0)
            top = f"mostly {s['top_reason']} ({n})" if n else s["top_reason"]
            error = f"{top}; {error}" if error else top
        rows.append([
            cut(name, 44), s["running"], counts["ok"], counts["slow"], counts["stuck"],
            other or NONE, percent(s["success_rate_1h"]), percent(s["success_rate_24h"]),
            duration(s["p95_runtime"]), _normal_cell(s.get("normal")),
            ago(s["last_success"], now), cut(error, 60),
        ])  # fmt: skip
    headers = ["TASK", "RUNNING", "OK", "SLOW", "STUCK", "OTHER", "SUCCESS 1H", "SUCCESS 24H",
               "P95", "NORMAL THIS HOUR", "LAST SUCCESS", "LAST ERROR"]  # fmt: skip
    return printable(head + "\n\n" + table(headers, rows))
