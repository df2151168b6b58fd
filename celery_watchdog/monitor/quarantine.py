"""One alert per quarantined input, when it is quarantined; its parked copies join it.

``flush.lua`` quarantines an input (a fingerprint) once it failed ``quarantine_after`` times
the same deterministic way as different task ids; workers then park its later copies in the
dead-letter queue unrun (:mod:`..worker.deliveries`). Here each pass alerts about the inputs
quarantined since the last one alerted, each claimed once, whichever monitor runs.
"""

from __future__ import annotations

from typing import Any

from ..model.records import Finding, Run
from ..store import Store


def new_findings(store: Store, limit: int = 1000) -> list[Finding]:
    found, latest = store.quarantine.new_since_seen(limit)
    if not found:
        return []
    won = store.monitor.claim_many([f"quarantine:{fp}" for fp, _ in found])
    findings = [_finding(fp, doc) for (fp, doc), ok in zip(found, won, strict=True) if ok]
    store.quarantine.mark_seen(latest)
    return findings


def _finding(fp: str, doc: dict[str, Any]) -> Finding:
    name = str(doc.get("name") or "")
    label = str(doc.get("label") or name)
    bucket = doc.get("reason") or None
    error = str(doc.get("error") or "")
    failures = doc.get("failures") or "several"
    reason = (f"{label} failed {failures} times with the same error"
              + (f" ({bucket}: {error})" if bucket and error else f" ({error})" if error else "")
              + "; quarantined: later copies are parked in the dead-letter queue")  # fmt: skip
    run = Run(task_id="", name=name, state="FAILURE", exception=error or None)
    return Finding(
        kind="poison", reason=reason, run=run, action="quarantined", bucket=bucket,
        subject=f"fp:{fp}",
    )  # fmt: skip
