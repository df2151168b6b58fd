"""``celery watchdog serve`` as a process behind a TLS proxy: the session cookie is marked Secure
when a proxy it believes (``--forwarded-allow-ips``) says the request came over https."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.helpers import REPO_ROOT, stop_process_group, unique_prefix, wait_for
from tests.http_helpers import OPERATOR, TOKENS

pytestmark = [pytest.mark.timeout(90), pytest.mark.subprocess]


@contextmanager
def serving(redis_url: str, workdir: Path, *args: str) -> Iterator[str]:
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, WATCHDOG_TEST_REDIS_URL=redis_url, PYTHONPATH=path,
               WATCHDOG_TEST_PREFIX=unique_prefix("wdserve"),
               WATCHDOG_TEST_CONF=json.dumps(TOKENS))  # fmt: skip
    log_path = workdir / f"serve-{len(args)}.log"
    command = [sys.executable, "-m", "celery", "-A", "tests.workerapp", "watchdog", "serve",
               "--port", "0", *args]  # fmt: skip
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def url() -> str | None:
        assert proc.poll() is None, f"serve exited:\n{log_path.read_text()[-3000:]}"
        found = re.search(r"status server on (http://127\.0\.0\.1:\d+)/", log_path.read_text())
        return found.group(1) if found else None

    try:
        yield wait_for(url, timeout=30, interval=0.1, what=f"a URL in {log_path}")
    finally:
        stop_process_group(proc)


def login_cookie(base: str) -> str:
    answer = httpx.post(f"{base}/login", data={"token": OPERATOR},
                        headers={"X-Forwarded-Proto": "https"}, follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303, answer.text
    return answer.headers["set-cookie"]


def test_the_session_cookie_is_secure_behind_a_believed_tls_proxy_only(
    redis_url: str, tmp_path: Path
) -> None:
    with serving(redis_url, tmp_path) as base:  # a proxy on this host (127.0.0.1) is believed
        cookie = login_cookie(base)
        assert "; secure" in cookie.lower() and "httponly" in cookie.lower()
    with serving(redis_url, tmp_path, "--forwarded-allow-ips", "10.9.9.9") as base:
        cookie = login_cookie(base)  # the header comes from an address not listed: ignored
        assert "; secure" not in cookie.lower() and "httponly" in cookie.lower()
