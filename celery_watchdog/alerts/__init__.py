"""Alerts a person can act on: the content (:class:`Alert`) and the channels that carry it.

alert = Alert.from_finding(finding, policy, redactor=redactor, now=now, app_name="proj")
channels = [channel_from_url(url) for url in settings.alert_channels]  # ValueError if bad
for delivery in deliver(channels, alert, timeout=10.0):
    print(delivery.channel, delivery.ok, delivery.error)
"""

from __future__ import annotations

from .channels import Channel, channel_from_url
from .deliver import Delivery, deliver, deliver_many
from .http import DeliveryError
from .model import Alert, Incident
from .wording import DEFAULT_SEVERITY, KINDS, SEVERITIES, default_severity

__all__ = [
    "DEFAULT_SEVERITY",
    "KINDS",
    "SEVERITIES",
    "Alert",
    "Channel",
    "Delivery",
    "DeliveryError",
    "Incident",
    "channel_from_url",
    "default_severity",
    "deliver",
    "deliver_many",
]
