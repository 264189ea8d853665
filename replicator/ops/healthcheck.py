"""``python -m replicator.ops.healthcheck``: the container's health check.

GETs /healthz (or ``--path``) on this machine's metrics endpoint and exits 0
when it answers 200, 1 otherwise. The port is REPLICATOR_METRICS_PORT, as the
service reads it. The image has no curl, and the Docker HEALTHCHECK, compose
and the ECS task definition all run this, so the path lives in one place:
``replicator.ops.endpoint``.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

from replicator.config import DEFAULT_METRICS_PORT, env_name
from replicator.ops.endpoint import HEALTHZ_PATH, METRICS_PATH, READYZ_PATH


def default_port() -> int:
    value = os.environ.get(env_name("metrics_port"))
    if value:
        return int(value)
    return DEFAULT_METRICS_PORT


def health_url(port: int, path: str = HEALTHZ_PATH) -> str:
    # The endpoint listens on 0.0.0.0 in a container, or 127.0.0.1 outside one:
    # the loopback address reaches it either way.
    return f"http://127.0.0.1:{port}{path}"


def probe(url: str, *, timeout: float) -> str | None:
    """None when ``url`` answers 200, else what went wrong."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status: int = response.status
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{url} did not answer: {reason}"
    return None if status == 200 else f"{url} answered {status}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m replicator.ops.healthcheck",
        description="Exit 0 when this machine's replicator endpoint answers 200.",
    )
    parser.add_argument("--port", type=int, default=None,
                        help=f"default: {env_name('metrics_port')} or its default")
    parser.add_argument("--path", default=HEALTHZ_PATH,
                        choices=[HEALTHZ_PATH, READYZ_PATH, METRICS_PATH])
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds")
    options = parser.parse_args(argv)
    try:
        port = options.port if options.port is not None else default_port()
    except ValueError:
        print(f"{env_name('metrics_port')} is not a port number", file=sys.stderr)
        return 1
    if port == 0:
        print(f"the endpoint is off ({env_name('metrics_port')}=0): nothing to check",
              file=sys.stderr)
        return 1
    problem = probe(health_url(port, options.path), timeout=options.timeout)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
