"""``celery -A proj watchdog serve [--host 127.0.0.1] [--port 5566] [--read-only]
[--forwarded-allow-ips 127.0.0.1]``: the status
server (the page, Flower's API, ours, ``/metrics``, health) on uvicorn, in this process.

Safe by default: it binds the loopback address. On any other address every read is open to
whoever can reach it unless ``watchdog_http_read_token`` is set, so it says so loudly on
start-up (changes always need ``watchdog_http_token``; without one there are none).
"""

from __future__ import annotations

import ipaddress
import logging
import sys

import click
from celery.bin.base import CeleryOption

from .base import WatchdogCommand, open_session, watchdog

DEFAULT_PORT = 5566


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def _log_to_stderr() -> None:
    """The audit lines (``celery_watchdog.http.audit``) go where uvicorn's log goes."""
    logger = logging.getLogger("celery_watchdog.http")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


@watchdog.command(cls=WatchdogCommand)
@click.option("--host", default="127.0.0.1", show_default=True, cls=CeleryOption,
              help_group="Server Options",
              help="Address to bind; anything but loopback needs watchdog_http_read_token "
                   "to keep reads private.")  # fmt: skip
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              cls=CeleryOption, help_group="Server Options",
              help="Port to listen on (0: any free port).")  # fmt: skip
@click.option("--read-only", is_flag=True, cls=CeleryOption, help_group="Server Options",
              help="Refuse every change (403), whatever the token.")  # fmt: skip
@click.option("--forwarded-allow-ips", default="127.0.0.1", show_default=True,
              cls=CeleryOption, help_group="Server Options",
              help="Proxies (comma-separated addresses, or *) whose X-Forwarded-Proto/-For are "
                   "believed: behind TLS there, the session cookie is marked Secure.")  # fmt: skip
@click.pass_context
def serve(
    ctx: click.Context, host: str, port: int, read_only: bool, forwarded_allow_ips: str
) -> None:
    """Serve the status page, Flower's HTTP API, /metrics and health checks."""
    # Imported here: every `celery` command loads this plugin, and a worker needs no server.
    import uvicorn

    from ..http.app import create_app

    session = open_session(ctx)
    settings = session.wd.settings
    server_app = create_app(session.wd.app, read_only=read_only)
    _log_to_stderr()
    config = uvicorn.Config(server_app, host=host, port=port, log_level="info",
                            server_header=False, access_log=True, proxy_headers=True,
                            forwarded_allow_ips=forwarded_allow_ips)  # fmt: skip
    sock = config.bind_socket()  # bound now, so the URL printed is the real one (--port 0)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"celery-watchdog status server on http://{shown}:{bound}/ (Redis "
               f"{session.url}{', read-only' if read_only else ''})")  # fmt: skip
    for warning in _warnings(host, settings.http_token, settings.http_read_token, read_only):
        click.secho(warning, err=True, fg="yellow", bold=True)
    uvicorn.Server(config).run(sockets=[sock])


def _warnings(host: str, token: str | None, read_token: str | None, read_only: bool) -> list[str]:
    out = []
    if not is_loopback(host) and read_token is None:
        out.append(f"WARNING: serving on {host} with no watchdog_http_read_token: anyone who "
                   "can reach this address reads every task, queue and incident (arguments "
                   "redacted). Set watchdog_http_read_token, or bind 127.0.0.1 behind a "
                   "proxy.")  # fmt: skip
    if token is None and not read_only:
        out.append("Note: watchdog_http_token is not set: every change (ack, replay, revoke, "
                   "pause) is refused.")  # fmt: skip
    return out
