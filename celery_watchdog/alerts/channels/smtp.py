"""``smtp://user:pass@host:port/?to=a@x,b@y&from=w@x[&starttls=1]``: plain text + HTML email.

``smtps://`` speaks TLS from the first byte (port 465). SMTP replies say whether a retry helps:
4xx is a temporary refusal, 5xx a permanent one; a dropped connection is worth another try.
"""

from __future__ import annotations

import html
import smtplib
import socket
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

from ..http import DeliveryError, channel_name, shown
from ..model import Alert

MAX_CHARS = 20000


def html_body(alert: Alert) -> str:
    rows = "".join(
        f"<tr><th align='left' valign='top'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in alert.facts()
    )
    return f"<html><body><h2>{html.escape(alert.title())}</h2><table>{rows}</table></body></html>"


class SmtpChannel:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        self.to = [a.strip() for v in query.get("to", []) for a in v.split(",") if a.strip()]
        if not parts.hostname or not self.to:
            raise ValueError(
                f"alert channel {shown(url)!r} is not valid: expected "
                "smtp://user:pass@host:port/?to=a@x,b@y&from=w@x"
            )
        self.ssl = parts.scheme == "smtps"
        self.host = parts.hostname
        self.port = parts.port or (465 if self.ssl else 25)
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        # gethostname, not getfqdn: start-up validation builds this and must not wait on DNS.
        self.sender = query.get("from", [f"celery-watchdog@{socket.gethostname()}"])[0]
        self.starttls = query.get("starttls", ["0"])[0].lower() in ("1", "true", "yes")
        self.name = channel_name(url)

    def message(self, alert: Alert) -> EmailMessage:
        a = alert.capped(MAX_CHARS)
        msg = EmailMessage()
        msg["Subject"] = a.title()[:200].replace("\n", " ")
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg.set_content(a.text(max_chars=MAX_CHARS))
        msg.add_alternative(html_body(a), subtype="html")
        return msg

    def send(self, alert: Alert, timeout: float = 10.0) -> None:
        cls = smtplib.SMTP_SSL if self.ssl else smtplib.SMTP
        try:
            with cls(self.host, self.port, timeout=max(0.01, timeout)) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.user:
                    smtp.login(self.user, self.password or "")
                smtp.send_message(self.message(alert), to_addrs=self.to)
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(
                f"{self.name} refused {sorted(exc.recipients)}", retryable=False
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"{self.name} answered {exc.smtp_code}", retryable=400 <= exc.smtp_code < 500
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{self.name} failed: {exc}", retryable=True) from None
