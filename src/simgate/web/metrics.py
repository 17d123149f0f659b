"""Prometheus metrics, in a registry owned by one app (no process-global state)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from simgate import __version__

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _CallbackCounters(Collector):
    def __init__(self, sources: dict[str, tuple[str, Callable[[], float]]]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[CounterMetricFamily]:
        for name, (doc, read) in self._sources.items():
            family = CounterMetricFamily(name, doc)
            family.add_metric([], read())
            yield family


class _LabelledGauges(Collector):
    def __init__(
        self, name: str, doc: str, labels: list[str], read: Callable[[], Iterable[Sample]]
    ) -> None:
        self._name, self._doc, self._labels, self._read = name, doc, labels, read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._doc, labels=self._labels)
        for values, value in self._read():
            family.add_metric(list(values), value)
        yield family


Sample = tuple[tuple[str, ...], float]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "simgate_http_requests",
            "HTTP requests answered.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "simgate_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "simgate_auth_failures",
            "Rejected API credentials, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.request_log_dropped = Counter(
            "simgate_request_log_dropped",
            "API request log entries dropped because the database fell behind.",
            registry=self.registry,
        )
        self.webhook_deliveries = Counter(
            "simgate_webhook_deliveries",
            "Webhook delivery attempts, by outcome (delivered, retry, gone, failed).",
            ["outcome"],
            registry=self.registry,
        )
        self.webhook_latency = Histogram(
            "simgate_webhook_duration_seconds",
            "Time a webhook receiver took to answer.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.otp_verifications = Counter(
            "simgate_otp_verifications",
            "One-time passcode verifications by app and outcome (started, resent, approved, "
            "max_attempts, expired, canceled).",
            ["app", "outcome"],
            registry=self.registry,
        )
        self.otp_checks = Counter(
            "simgate_otp_checks",
            "Codes checked, by app and result (approved, wrong, expired, max_attempts, "
            "not_found, canceled).",
            ["app", "result"],
            registry=self.registry,
        )
        build = Gauge("simgate_build_info", "simgate version.", ["version"], registry=self.registry)
        build.labels(__version__).set(1)

    def add_callback_counters(self, sources: dict[str, tuple[str, Callable[[], float]]]) -> None:
        self.registry.register(_CallbackCounters(sources))

    def add_gauges(self, sources: dict[str, tuple[str, Callable[[], float]]]) -> None:
        """Gauges read when scraped (``name: (help, read)``)."""
        for name, (doc, read) in sources.items():
            Gauge(name, doc, registry=self.registry).set_function(read)

    def add_labelled_gauge(
        self, name: str, doc: str, labels: list[str], read: Callable[[], Iterable[Sample]]
    ) -> None:
        """A gauge with labels, its samples read when scraped (``(label values, value)``)."""
        self.registry.register(_LabelledGauges(name, doc, labels, read))
