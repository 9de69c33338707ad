"""Prometheus metrics for ``GET /metrics``: what was answered, and what the hosts hold now.

Counters and histograms are updated with the decision record, after the answer has gone out
(``RouterService.record``), so the request path pays nothing for them. What is true at the
moment (requests in flight, resident models, the embedded fallback) is read when Prometheus
scrapes. Each router has a registry of its own: several routers in one process (the tests)
do not share counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

if TYPE_CHECKING:
    from .events import Finish
    from .fleet import Fleet
    from .llm_classifier import LlmClassifier
    from .routing.decision import Decision

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The classic text format, which every Prometheus version reads (the names here are ASCII)."""
_PREFIX = "memory_router"
_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_DECIDE_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1)


class Metrics:
    """The router's counters, and a collector that reads the live state at scrape time."""

    def __init__(self, fleet: Fleet, classifier: Callable[[], LlmClassifier | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            f"{_PREFIX}_requests", "Answered requests by model, task class and outcome",
            ["model", "task", "outcome"], registry=r,
        )  # fmt: skip
        self.seconds = Histogram(
            f"{_PREFIX}_request_seconds", "Time from admission to the last event, by model",
            ["model"], buckets=_SECONDS, registry=r,
        )  # fmt: skip
        self.tokens = Counter(
            f"{_PREFIX}_tokens", "Tokens the backends reported, by model and kind",
            ["model", "kind"], registry=r,
        )  # fmt: skip
        self.loads = Counter(
            f"{_PREFIX}_model_loads", "Requests whose routing decision loaded a model",
            ["model"], registry=r,
        )  # fmt: skip
        self.load_seconds = Counter(
            f"{_PREFIX}_model_load_seconds", "Seconds the backends reported spending on loads",
            ["model"], registry=r,
        )  # fmt: skip
        self.decide = Histogram(
            f"{_PREFIX}_decision_seconds", "Time to make a routing decision",
            buckets=_DECIDE_SECONDS, registry=r,
        )  # fmt: skip
        self.errors = Counter(
            f"{_PREFIX}_errors", "Error responses by HTTP status", ["status"], registry=r
        )
        self.retries = Counter(
            f"{_PREFIX}_retries", "Retries before the answer's first event, by model and host",
            ["model", "backend"], registry=r,
        )  # fmt: skip
        self.fallbacks = Counter(
            f"{_PREFIX}_fallbacks", "Requests answered by the next choice after a failure",
            ["failed", "answered"], registry=r,
        )  # fmt: skip
        self.tool_calls = Counter(
            f"{_PREFIX}_tool_calls", "Tool calls checked against the request's schema, by "
            "result: valid, repaired (and how), invalid (passed on as sent), unchecked",
            ["result"], registry=r,
        )  # fmt: skip
        r.register(_Live(fleet, classifier))
        self._children: dict[tuple[str, str, str], tuple[Any, Any, Any, Any]] = {}

    def observe(
        self, decision: Decision, finish: Finish | None, outcome: str, seconds: float
    ) -> None:
        """Count one answered (or failed) request; called after the answer went out."""
        model = decision.model
        key = (model, decision.task or "direct", outcome)
        children = self._children.get(key)
        if children is None:  # labels() takes a lock and builds a key: once per label set
            children = self._children[key] = (
                self.requests.labels(*key),
                self.seconds.labels(model),
                self.tokens.labels(model, "prompt"),
                self.tokens.labels(model, "completion"),
            )
        answered, took, prompt, completion = children
        answered.inc()
        took.observe(seconds)
        decide_ms = decision.decide_ms
        if decide_ms is not None:
            self.decide.observe(decide_ms / 1000)
        if decision.loads:
            self.loads.labels(model).inc()
        if finish is None:
            return
        if finish.usage is not None:
            prompt.inc(finish.usage.prompt_tokens)
            completion.inc(finish.usage.completion_tokens)
        load_ns = finish.stats.get("load_duration")
        if decision.loads and isinstance(load_ns, int | float):
            self.load_seconds.labels(model).inc(load_ns / 1e9)

    def checked_tools(self, report: dict[str, Any]) -> None:
        """Count one answer's tool calls (``ToolCheck.report``)."""
        repaired = report["repaired"]
        faults = sum(repaired.values()) + report["invalid"] + report["unchecked"]
        if valid := report["checked"] - faults:
            self.tool_calls.labels("valid").inc(valid)
        for kind, count in repaired.items():
            self.tool_calls.labels(f"repaired_{kind}").inc(count)
        for result in ("invalid", "unchecked"):
            if report[result]:
                self.tool_calls.labels(result).inc(report[result])

    def retried(self, model: str, backend: str) -> None:
        self.retries.labels(model, backend).inc()

    def fell_back(self, failed: str, answered: str) -> None:
        self.fallbacks.labels(failed, answered).inc()

    def error(self, status: int) -> None:
        self.errors.labels(str(status)).inc()

    def gone_unread(self) -> None:
        """A client that hung up while sending its body: outcome ``client_gone``, with no
        model or task (nothing was decided)."""
        self.requests.labels("", "", "client_gone").inc()

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


class _Live:
    """Gauges read from the fleet (and the LLM classifier) when scraped."""

    def __init__(self, fleet: Fleet, classifier: Callable[[], LlmClassifier | None]) -> None:
        self._fleet = fleet
        self._classifier = classifier

    def describe(self) -> list[Any]:
        return []  # read at collect time only: nothing to check at registration

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        fleet = self._fleet
        monitor = fleet.monitor
        in_flight = GaugeMetricFamily(
            f"{_PREFIX}_in_flight", "Requests running or waiting, by model", labels=["model"]
        )
        resident = GaugeMetricFamily(
            f"{_PREFIX}_resident_bytes",
            "What each host holds, by model and num_ctx (bytes, from /api/ps)",
            labels=["backend", "model", "num_ctx"],
        )
        if monitor is not None:
            per_model: dict[str, int] = {}  # summed over a pool's hosts
            for key, count in monitor.in_flight.items():
                model = key.partition("/")[2]
                per_model[model] = per_model.get(model, 0) + count
            for model, count in sorted(per_model.items()):
                in_flight.add_metric([model], count)
            for name, snapshot in sorted(monitor.view().snapshots.items()):
                for r in snapshot.resident:
                    resident.add_metric([name, r.model, str(r.num_ctx)], r.size)
        fallback = GaugeMetricFamily(
            f"{_PREFIX}_embedded_fallback", "1 while the embedded demo model stands in for Ollama"
        )
        fallback.add_metric([], 1 if fleet.embedded_fallback else 0)
        cooling = GaugeMetricFamily(
            f"{_PREFIX}_cooling_down",
            "1 while a host (or host/model) is skipped after failures in a row",
            labels=["key"],
        )
        failures = GaugeMetricFamily(
            f"{_PREFIX}_failures_in_a_row",
            "Failures in a row, by host or host/model",
            labels=["key"],
        )
        for key, state in sorted(fleet.health.snapshot().items()):
            cooling.add_metric([key], 1 if state["cooling"] else 0)
            failures.add_metric([key], state["failures"])
        yield from (in_flight, resident, fallback, cooling, failures)
        classifier = self._classifier()
        if classifier is not None:
            asked = CounterMetricFamily(
                f"{_PREFIX}_llm_classifier_requests",
                "Times the LLM classifier was asked, by outcome (class, no_class, failed)",
                labels=["model", "outcome"],
            )
            for outcome in ("class", "no_class", "failed"):
                count = classifier.outcomes[outcome]
                asked.add_metric([classifier.model, outcome], count)
            yield asked
