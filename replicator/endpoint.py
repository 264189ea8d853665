"""The HTTP endpoint: Prometheus metrics, liveness and readiness."""

from __future__ import annotations

METRICS_PATH = "/metrics"
HEALTHZ_PATH = "/healthz"
READYZ_PATH = "/readyz"
