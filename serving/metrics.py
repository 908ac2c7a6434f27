"""Prometheus metrics: one registry per app, and the middleware that counts requests."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    """The Prometheus metrics of one app (its own registry, so apps in one process don't clash)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("wildscan_requests_total", "HTTP requests", ["method", "route", "status"], registry=r)
        self.latency = Histogram(
            "wildscan_request_seconds",
            "HTTP request latency",
            ["route"],
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.images = Counter("wildscan_images_total", "Images received for classification", registry=r)
        self.results = Counter("wildscan_results_total", "Images classified, per label", ["label"], registry=r)
        self.flagged = Counter("wildscan_flagged_total", "Images flagged, per category", ["label"], registry=r)
        self.errors = Counter("wildscan_image_errors_total", "Images refused, per reason", ["reason"], registry=r)
        self.batch_size = Histogram(
            "wildscan_batch_size", "Images per model call", registry=r, buckets=(1, 2, 4, 8, 16, 32, 64, 128)
        )
        self.inference = Histogram(
            "wildscan_inference_seconds",
            "Seconds per model call",
            registry=r,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )

    def observe_batch(self, size: int, seconds: float) -> None:
        """Record one model call (the batcher's observer)."""
        self.batch_size.observe(size)
        self.inference.observe(seconds)

    def observe_records(self, records: list[dict]) -> None:
        """Count classified images, flags and per-image errors."""
        for record in records:
            self.images.inc()
            if record.get("error"):
                self.errors.labels(record["error"]["reason"]).inc()
            else:
                self.results.labels(record["label"]).inc()
                if record.get("flagged"):
                    self.flagged.labels(record["label"]).inc()


class MetricsMiddleware:
    """Counts requests and their latency per route template (pure ASGI, cheap)."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500
        started = time.perf_counter()

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
