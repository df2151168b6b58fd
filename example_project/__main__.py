"""``python -m example_project demo [--duration SECONDS] [--redis-url URL]``."""

from __future__ import annotations

import argparse
import sys

from example_project import demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m example_project",
        epilog="WATCHDOG_DEMO_FAST=1 shortens the example's budgets (stuck after 8 s, not 15).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("demo", help="run a worker, beat and a live watchdog view")
    run.add_argument(
        "--duration", type=float, default=None, help="stop after SECONDS (default: until Ctrl-C)"
    )
    run.add_argument(
        "--redis-url",
        default=None,
        help="use this Redis (default: $REDIS_URL, else an embedded redis-server)",
    )
    run.add_argument(
        "--webhook",
        action="append",
        default=[],
        metavar="URL",
        help="also post every alert to URL (an https:// webhook, or any alert channel URL such "
        "as slack+https://…); repeatable",
    )
    run.add_argument(
        "--screenshot",
        default=None,
        metavar="PNG",
        help="save the status page, signed in, to PNG 40 s in (needs playwright and chromium)",
    )
    args = parser.parse_args(argv)
    return demo.run(
        duration=args.duration,
        redis_url=args.redis_url,
        webhooks=args.webhook,
        screenshot_to=args.screenshot,
    )


if __name__ == "__main__":
    sys.exit(main())
