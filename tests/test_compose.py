"""docker-compose.yml, read as Compose reads it (no Docker engine here): every service the README
promises, each with a healthcheck, ports published on loopback only, and the commands real."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")
ROOT = Path(__file__).resolve().parents[1]


def services() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def test_compose_runs_redis_worker_beat_the_status_server_and_flower_with_healthchecks() -> None:
    found = services()
    assert set(found) == {"redis", "worker", "beat", "watchdog", "flower"}
    for name in ("redis", "worker", "watchdog", "flower"):
        assert found[name].get("healthcheck", {}).get("test"), name
    for name, spec in found.items():
        for port in spec.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)  # never on every interface
    assert "/healthz" in " ".join(found["watchdog"]["healthcheck"]["test"])


def test_the_status_servers_command_is_a_real_celery_command() -> None:
    command = services()["watchdog"]["command"]
    assert command[:4] == ["celery", "-A", "example_project", "watchdog"]
    args = [sys.executable, "-m", "celery", "-A", "example_project", "watchdog", *command[4:],
            "--help"]  # fmt: skip
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--read-only" in done.stdout and "--host" in done.stdout
