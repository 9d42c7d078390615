"""librdkafka's error callback, as every service wants it: a fatal error is handed to the service to act
on; the transient ones a broker outage repeats on every reconnect are logged at most every few seconds."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import KafkaError


class ThrottledLog:
    """Log a recurring message at most once per `interval_s`."""

    def __init__(self, log: logging.Logger, interval_s: float = 5.0) -> None:
        self.log = log
        self.interval_s = interval_s
        self._last = 0.0

    def __call__(self, level: int, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last > self.interval_s:
            self._last = now
            self.log.log(level, message, *args)


def error_callback(log: logging.Logger, on_fatal: Callable[[str], None], what: str = "kafka"
                   ) -> Callable[[KafkaError], None]:
    """An `error_cb` for a librdkafka client: `on_fatal(description)` for a fatal error (logged critical),
    throttled warnings for the rest."""
    throttled = ThrottledLog(log)

    def on_error(err: KafkaError) -> None:
        if err.fatal():
            description = f"{what} fatal error: {err}"
            log.critical(description)
            on_fatal(description)
        else:
            throttled(logging.WARNING, "kafka: %s", err)

    return on_error
