"""Request counters and a latency histogram per route, kept by a pure ASGI middleware (no
per-request objects beyond a closure), rendered as Prometheus text with the live gauges."""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RequestMetrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[str, list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self.latency_sum: dict[str, float] = defaultdict(float)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, status)] += 1
        self.latency[route][bisect.bisect_left(BUCKETS, seconds)] += 1
        self.latency_sum[route] += seconds

    def render(self, *, streams: int, notices: int, waits: dict[str, int]) -> str:
        lines = [
            "# HELP query_api_requests_total Requests answered, by route template and status.",
            "# TYPE query_api_requests_total counter",
        ]
        for (method, route, status), count in sorted(self.requests.items()):
            lines.append(
                f'query_api_requests_total{{method="{method}",route="{route}",status="{status}"}} {count}'
            )
        lines += [
            "# HELP query_api_request_seconds Seconds from the request to the end of its response,"
            " by route (a stream counts until it closes).",
            "# TYPE query_api_request_seconds histogram",
        ]
        for route, counts in sorted(self.latency.items()):
            total = 0
            for bound, count in zip((*BUCKETS, "+Inf"), counts, strict=True):
                total += count
                lines.append(f'query_api_request_seconds_bucket{{route="{route}",le="{bound}"}} {total}')
            lines.append(f'query_api_request_seconds_sum{{route="{route}"}} {self.latency_sum[route]:.6f}')
            lines.append(f'query_api_request_seconds_count{{route="{route}"}} {total}')
        lines += [
            "# HELP query_api_streams Live /stream connections open now.",
            "# TYPE query_api_streams gauge",
            f"query_api_streams {streams}",
            "# HELP query_api_change_notifications_total Projector change notifications received.",
            "# TYPE query_api_change_notifications_total counter",
            f"query_api_change_notifications_total {notices}",
            "# HELP query_api_read_your_writes_total Reads with ?after=, by outcome.",
            "# TYPE query_api_read_your_writes_total counter",
        ]
        lines += [f'query_api_read_your_writes_total{{outcome="{k}"}} {v}' for k, v in sorted(waits.items())]
        return "\n".join(lines) + "\n"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.metrics.observe(scope["method"], template, status, time.perf_counter() - began)
