"""CI step: every Python the package claims (``requires-python >= 3.10``) runs the tests.

    python .ci/pythons.py [3.10 3.13 ...]

The whole suite runs on the CI interpreter (3.11); here each other claimed version gets a
fresh virtualenv with ``pip install -e "<checkout>[test]"`` and runs the fast part of the
suite: ``pytest -m "not subprocess"`` (pure and in-process tests, real Redis servers included;
modules that start worker, beat or CLI subprocesses are marked ``subprocess`` by
``tests/conftest.py``). Interpreters are found as ``pythonX.Y`` on PATH or under pyenv's
versions; with ``CI=true`` a missing one fails the step, elsewhere it is skipped with a note.
Standard library only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VERSIONS = ("3.10", "3.13")


def find(version: str) -> str | None:
    """An interpreter of ``version``: on PATH, else the newest pyenv build of it (a pyenv
    shim on PATH answers only for the versions selected in pyenv: it is not trusted)."""
    on_path = shutil.which(f"python{version}")
    if on_path and "/shims/" not in on_path:
        return on_path
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    builds = sorted(root.glob(f"{version}.*"), key=lambda p: [int(x) for x in
                    p.name.split(".") if x.isdigit()])  # fmt: skip
    for build in reversed(builds):
        python = build / "bin" / "python"
        if python.is_file():
            return str(python)
    return None


def run(cmd: list[str], **kwargs: object) -> None:
    print("  $", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


def test_with(version: str, python: str, work: Path) -> None:
    started = time.monotonic()
    venv = work / f"py{version}"
    run([python, "-m", "venv", str(venv)])
    bin_python = str(venv / "bin" / "python")
    run([bin_python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-e",
         f"{REPO}[test]"])  # fmt: skip
    run([bin_python, "-m", "pytest", "-q", "-m", "not subprocess", "-p", "no:cacheprovider"],
        cwd=REPO)  # fmt: skip
    print(f"[pythons] {version}: passed in {time.monotonic() - started:.0f}s", flush=True)


def main(versions: list[str]) -> int:
    missing = []
    with tempfile.TemporaryDirectory(prefix="watchdog-pythons-") as tmp:
        for version in versions:
            python = find(version)
            if python is None:
                missing.append(version)
                print(f"[pythons] no Python {version} found (PATH, pyenv)", flush=True)
                continue
            print(f"[pythons] {version}: {python}", flush=True)
            try:
                test_with(version, python, Path(tmp))
            except subprocess.CalledProcessError as exc:
                print(f"[pythons] {version}: FAILED ({exc})", flush=True)
                return 1
    if missing and os.environ.get("CI") == "true":
        print(f"[pythons] FAILED: Python {', '.join(missing)} not found", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or list(VERSIONS)))
