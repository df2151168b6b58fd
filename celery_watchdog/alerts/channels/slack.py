"""``slack+https://hooks.slack.com/…``: a Block Kit message (header, fields, context).

Block Kit limits shape the caps: a header holds 150 characters, a section field 2000, a
section 3000. The top-level ``text`` carries the whole alert as plain text: Slack shows it in
notifications, and Teams' incoming webhooks (which ignore ``blocks``) show only it.
"""

from __future__ import annotations

import json
from typing import Any

from .. import http
from ..http import channel_name
from ..model import Alert
from .webhook import split_secret

ICONS = {"P1": ":red_circle:", "P2": ":large_orange_circle:", "P3": ":large_blue_circle:"}


def blocks(alert: Alert) -> dict[str, Any]:
    a = alert.capped(1900)
    facts = dict(a.facts())
    next_step = facts.pop("Next step", "")
    fields = [{"type": "mrkdwn", "text": f"*{label}*\n{value}"} for label, value in facts.items()]
    return {
        "text": alert.text(max_chars=3000),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": a.title()[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": a.summary[:3000]}},
            {"type": "section", "fields": fields[:10]},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Next step*\n{next_step}"}},
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"{ICONS.get(a.severity, '')} {a.severity}"},
                    {"type": "mrkdwn", "text": f"kind: {a.kind}"},
                    {"type": "mrkdwn", "text": f"task id: {a.task_id}"},
                ],
            },
        ],
    }


class SlackChannel:
    def __init__(self, url: str) -> None:
        self.url, _ = split_secret(url, "slack+")
        self.name = channel_name(url)

    def send(self, alert: Alert, timeout: float = 10.0) -> None:
        body = json.dumps(blocks(alert), default=str).encode()
        http.post(self.url, body, headers={"Content-Type": "application/json"}, timeout=timeout)
