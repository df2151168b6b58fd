"""Benchmarks of celery_watchdog's cost: ``python -m benchmarks.overhead --help``."""
