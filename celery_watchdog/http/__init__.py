"""The status server (``celery watchdog serve``): Flower's HTTP API at Flower's paths, ours under
``/api/watchdog/``, the page at ``/``, ``/metrics``, ``/healthcheck`` and ``/healthz``.

Stateless: every answer is read from the store, so replicas behind a load balancer agree.
"""
