"""A small Celery project watched by celery_watchdog.

Run the guided demo with ``python -m example_project demo``; run the pieces yourself with
``celery -A example_project worker`` / ``beat`` / ``watchdog status`` (see ``celery.py``).

The app lives in ``example_project.celery`` and is deliberately not imported here, so that the
demo can choose ``REDIS_URL`` before the app reads it.
"""
