"""Request counts and latencies in the Prometheus text exposition format (no client library needed)."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Callable, Mapping

#: histogram buckets of request latency (seconds)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: metric name prefix
PREFIX = "msa_serve"


def _labels(pairs: Mapping[str, str]) -> str:
    def esc(v: str) -> str:
        return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in pairs.items()) + "}" if pairs else ""


class Metrics:
    """Counters and histograms of the server's requests, rendered by :meth:`render`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)  # (route, method, status) -> count
        self.buckets: dict[str, list[int]] = {}  # route -> count per bucket (cumulative when rendered)
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.predictions: dict[str, int] = defaultdict(int)  # outcome ("ok", error code) -> count
        self.upload_bytes = 0

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, method, status)] += 1
            b = self.buckets.setdefault(route, [0] * (len(LATENCY_BUCKETS) + 1))
            i = next((k for k, le in enumerate(LATENCY_BUCKETS) if seconds <= le), len(LATENCY_BUCKETS))
            b[i] += 1
            self.sums[route] += seconds
            self.counts[route] += 1

    def prediction(self, outcome: str, upload_bytes: int = 0) -> None:
        with self._lock:
            self.predictions[outcome] += 1
            self.upload_bytes += upload_bytes

    def render(self, gauges: Callable[[], Mapping[str, int]] | None = None) -> str:
        """The exposition text: requests_total, request_duration_seconds, predictions_total, upload bytes and
        the queue gauges (``gauges()``: name -> value)."""
        p = PREFIX
        out = [f"# HELP {p}_requests_total HTTP requests by route, method and status.",
               f"# TYPE {p}_requests_total counter"]
        with self._lock:
            for (route, method, status), n in sorted(self.requests.items()):
                out.append(f"{p}_requests_total{_labels({'route': route, 'method': method, 'status': str(status)})} {n}")
            out += [f"# HELP {p}_request_duration_seconds Time from request to answer, by route.",
                    f"# TYPE {p}_request_duration_seconds histogram"]
            for route in sorted(self.buckets):
                total = 0
                for le, n in zip([*map(str, LATENCY_BUCKETS), "+Inf"], self.buckets[route]):
                    total += n
                    out.append(f"{p}_request_duration_seconds_bucket{_labels({'route': route, 'le': le})} {total}")
                out.append(f"{p}_request_duration_seconds_sum{_labels({'route': route})} {self.sums[route]:.6f}")
                out.append(f"{p}_request_duration_seconds_count{_labels({'route': route})} {self.counts[route]}")
            out += [f"# HELP {p}_predictions_total Predictions by outcome (ok or the error code).",
                    f"# TYPE {p}_predictions_total counter"]
            for outcome, n in sorted(self.predictions.items()):
                out.append(f"{p}_predictions_total{_labels({'outcome': outcome})} {n}")
            out += [f"# HELP {p}_upload_bytes_total Bytes of uploads received.",
                    f"# TYPE {p}_upload_bytes_total counter", f"{p}_upload_bytes_total {self.upload_bytes}"]
        for name, value in (gauges() if gauges else {}).items():
            out += [f"# HELP {p}_{name} Model queue: {name}.", f"# TYPE {p}_{name} gauge", f"{p}_{name} {value}"]
        return "\n".join(out) + "\n"
