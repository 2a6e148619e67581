"""``GET /metrics``: the server in Prometheus' text format (prometheus-client), for whoever runs
tunegate as a service. Outside ``/v1`` and the contract; with keys configured, an admin key's.

Two kinds of figures: what this process counts as requests pass (requests and their latency by
operationId and status), and what the store says at the moment of the scrape (jobs by status
and method, the queue's depth and its oldest job's age, webhook deliveries by outcome; and the
serving pool's model processes and their queues), read by
a collector so that a scrape always agrees with the API's lists and with other API processes.
Each app has its own registry (tests build many apps in one process).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tunegate.serving.pool import ModelPool
from tunegate.store.base import Store

# A ``_created`` series per counter doubles the output and tells an operator nothing here.
disable_created_metrics()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Requests refused before routing (a bad key, the rate limit) or to no operation (a 404 path).
UNROUTED = "none"
# Latency buckets, seconds: most answers take milliseconds; uploads and chats take longer.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class StoreFigures(Collector):
    """The store's figures and the serving pool's, read at each scrape."""

    def __init__(self, store: Store, pool: ModelPool | None):
        self.store = store
        self.pool = pool

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily("tunegate_fine_tuning_jobs",
                                 "Fine-tuning jobs by status and method.",
                                 labels=["status", "method"])
        for (status, method), count in sorted(self.store.job_counts().items()):
            jobs.add_metric([status, method], count)
        yield jobs
        depth, oldest = self.store.queue_figures()
        yield GaugeMetricFamily("tunegate_queue_depth",
                                "Jobs waiting for a worker (validating_files or queued).",
                                value=depth)
        yield GaugeMetricFamily("tunegate_queue_oldest_age_seconds",
                                "Age of the oldest job waiting for a worker (0: none waits).",
                                value=0 if oldest is None else max(0.0, time.time() - oldest))
        deliveries = GaugeMetricFamily("tunegate_webhook_deliveries",
                                       "Webhook deliveries by outcome (pending, delivered, "
                                       "failed).", labels=["status"])
        for status, count in sorted(self.store.webhook_delivery_counts().items()):
            deliveries.add_metric([status], count)
        yield deliveries
        steps = GaugeMetricFamily("tunegate_training_step",
                                  "The last step a running job recorded.", labels=["job"])
        speed = GaugeMetricFamily("tunegate_training_tokens_per_second",
                                  "Training tokens per second of a running job's last step.",
                                  labels=["job"])
        for job, data in sorted(self.store.running_progress().items()):
            steps.add_metric([job], float(data.get("step") or 0))
            if data.get("tokens_per_second") is not None:
                speed.add_metric([job], float(data["tokens_per_second"]))
        yield steps
        yield speed
        if self.pool is not None:
            yield GaugeMetricFamily("tunegate_serving_processes",
                                    "Model processes (llama.cpp) this API process keeps.",
                                    value=len(self.pool.loaded()))
            users = GaugeMetricFamily("tunegate_serving_requests",
                                      "Requests using or waiting for each kept model.",
                                      labels=["model"])
            for model, count in sorted(self.pool.users().items()):
                users.add_metric([model], count)
            yield users


class Metrics:
    def __init__(self, store: Store, pool: ModelPool | None = None):
        self.registry = CollectorRegistry()
        self.requests = Counter("tunegate_http_requests", "HTTP requests answered, by "
                                "operationId and status.", ["operation", "status"],
                                registry=self.registry)
        self.latency = Histogram("tunegate_http_request_duration_seconds", "Time to answer "
                                 "(to the first byte of a stream), by operationId and status.",
                                 ["operation", "status"], buckets=BUCKETS,
                                 registry=self.registry)
        self.registry.register(StoreFigures(store, pool))

    def observe(self, operation: str | None, status: int, seconds: float) -> None:
        labels = (operation or UNROUTED, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
