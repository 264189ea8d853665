"""The topology file: what a valid one holds, and a one-line error for each bad input."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from replicator.cli import main
from replicator.config import Settings
from replicator.errors import ConfigError
from replicator.logs import configure_logging
from replicator.topology import load, single_path

ONE_INTO_THREE = """
task = "orders-replication"

[[path]]
source = { table = "orders", region = "us-east-1" }

[[path.destination]]
name = "eu"
table = "orders"
region = "eu-west-1"

[[path.destination]]
name = "ap"
table = "orders"
region = "ap-southeast-2"
create = true

[[path.destination]]
name = "us-west"
table = "orders-copy"
region = "us-west-2"
endpoint = "http://127.0.0.1:8001"
profile = "west"
"""

TWO_INTO_ONE = """
task = "two-tables"

[[path]]
source = { table = "orders", region = "us-east-1" }
destination = [{ name = "orders-eu", table = "orders", region = "eu-west-1" }]

[[path]]
source = { table = "customers", region = "us-east-1" }
destination = [{ name = "customers-eu", table = "customers", region = "eu-west-1" }]
"""


def written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "topology.toml"
    path.write_text(textwrap.dedent(text))
    return path


def refused(tmp_path: Path, text: str) -> str:
    path = written(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load(path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"--config {path}: ")
    return message.removeprefix(f"--config {path}: ")


def test_one_table_into_three_regions(tmp_path: Path) -> None:
    topology = load(written(tmp_path, ONE_INTO_THREE))
    assert topology.task == "orders-replication"
    pairs = topology.destinations()
    assert [(source.table, destination.name, destination.region)
            for source, destination in pairs] == [
        ("orders", "eu", "eu-west-1"), ("orders", "ap", "ap-southeast-2"),
        ("orders", "us-west", "us-west-2")]
    assert [destination.create for _, destination in pairs] == [False, True, False]
    assert pairs[2][1].endpoint == "http://127.0.0.1:8001"
    assert pairs[2][1].profile == "west"
    assert topology.named("ap")[1].table == "orders"


def test_two_tables_into_one_region(tmp_path: Path) -> None:
    topology = load(written(tmp_path, TWO_INTO_ONE))
    assert [(source.table, destination.table) for source, destination
            in topology.destinations()] == [("orders", "orders"), ("customers", "customers")]


def test_an_unknown_destination_name_is_an_error_that_lists_the_names(tmp_path: Path) -> None:
    topology = load(written(tmp_path, ONE_INTO_THREE))
    with pytest.raises(ConfigError, match=r"--destination asia: no destination of that name "
                                          r"in the topology \(eu, ap, us-west\)"):
        topology.named("asia")


def test_the_single_path_settings_are_a_topology_of_one_path() -> None:
    settings = Settings(source_table="orders", source_region="us-east-1",
                        destination_table="orders-dr", destination_region="eu-west-1",
                        source_endpoint="http://127.0.0.1:9000")
    topology = single_path(settings)
    assert topology.task == settings.task_name
    ((source, destination),) = topology.destinations()
    assert (source.table, source.region, source.endpoint) == (
        "orders", "us-east-1", "http://127.0.0.1:9000")
    assert (destination.table, destination.region) == ("orders-dr", "eu-west-1")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--config .*absent.toml: no such file$"):
        load(tmp_path / "absent.toml")


def test_a_file_that_is_not_toml_says_where(tmp_path: Path) -> None:
    assert refused(tmp_path, 'task = "x"\n[[path]\n').startswith("not valid TOML: ")


def test_an_unknown_key_names_the_closest_real_one(tmp_path: Path) -> None:
    text = ONE_INTO_THREE.replace('name = "eu"\ntable', 'name = "eu"\ntabel', 1)
    assert refused(tmp_path, text) == (
        "path[0].destination[0].table: is required; "
        "path[0].destination[0].tabel: unknown key (did you mean table?)")


def test_an_unknown_top_level_key_lists_the_known_ones(tmp_path: Path) -> None:
    assert refused(tmp_path, 'zzz = 1\n' + TWO_INTO_ONE) == (
        "zzz: unknown key (known: task, checkpoint, path)")


def test_a_path_without_destinations(tmp_path: Path) -> None:
    text = 'task = "t-1"\n[[path]]\nsource = { table = "orders", region = "us-east-1" }\n'
    assert refused(tmp_path, text) == "path[0].destination: is required"
    text += "destination = []\n"
    assert refused(tmp_path, text) == (
        "path[0].destination: a path needs at least one [[path.destination]]")


def test_a_topology_without_paths(tmp_path: Path) -> None:
    assert refused(tmp_path, 'task = "t-1"\npath = []\n') == (
        "path: the topology needs at least one [[path]]")


def test_two_paths_writing_one_destination_table(tmp_path: Path) -> None:
    text = TWO_INTO_ONE.replace('table = "customers", region = "eu-west-1"',
                                'table = "orders", region = "eu-west-1"')
    assert refused(tmp_path, text) == (
        "path[1] destination 'customers-eu': table orders is written by destination "
        "'orders-eu' too; a table has one source")


def test_a_destination_that_is_its_own_source(tmp_path: Path) -> None:
    text = TWO_INTO_ONE.replace('{ name = "orders-eu", table = "orders", region = "eu-west-1" }',
                                '{ name = "orders-eu", table = "orders", region = "us-east-1" }')
    assert refused(tmp_path, text) == (
        "path[0] destination 'orders-eu': table orders is the path's own source")


def test_two_way_replication_is_refused_as_not_supported(tmp_path: Path) -> None:
    text = """
    task = "two-way"
    [[path]]
    source = { table = "orders", region = "us-east-1" }
    destination = [{ name = "to-eu", table = "orders", region = "eu-west-1" }]
    [[path]]
    source = { table = "orders", region = "eu-west-1" }
    destination = [{ name = "to-us", table = "orders", region = "us-east-1" }]
    """
    message = refused(tmp_path, text)
    assert message.startswith("path[0] destination 'to-eu': tables orders and orders "
                              "replicate into each other; two-way replication is not "
                              "supported")


def test_a_destination_name_used_twice(tmp_path: Path) -> None:
    text = TWO_INTO_ONE.replace('name = "customers-eu"', 'name = "orders-eu"')
    assert refused(tmp_path, text) == (
        "path[1] destination 'orders-eu': the name is used twice; each destination needs "
        "its own")


def test_a_bad_value_is_shown(tmp_path: Path) -> None:
    text = ONE_INTO_THREE.replace('endpoint = "http://127.0.0.1:8001"', 'endpoint = "nowhere"')
    assert refused(tmp_path, text).startswith(
        "path[0].destination[2].endpoint: must be a URL such as http://127.0.0.1:8000")


def test_two_paths_reading_one_source_are_refused(tmp_path: Path) -> None:
    text = TWO_INTO_ONE.replace('table = "customers", region = "us-east-1"',
                                'table = "orders", region = "us-east-1"')
    assert "two paths read one source table" in refused(tmp_path, text)


# -- replicator check ------------------------------------------------------------------


@pytest.fixture(autouse=True)
def aws_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """AWS config files that hold one profile, ``west``; the logging that ``main`` sets
    up is put back afterwards."""
    config = tmp_path / "aws-config"
    config.write_text("[profile west]\nregion = us-west-2\n")
    credentials = tmp_path / "aws-credentials"
    credentials.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    yield
    configure_logging("warning", "json")


def test_check_of_a_bad_file_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = written(tmp_path, TWO_INTO_ONE.replace('name = "customers-eu"', 'name = "orders-eu"'))
    assert main(["check", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"replicator: error: --config {path}: path[1] destination 'orders-eu': the name is "
        "used twice; each destination needs its own\n")


def test_check_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"]) == 2
    assert "--config" in capsys.readouterr().err


def test_the_readmes_topology_file_is_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### Topology files", 1)[1]
    section = section.split("\n### ", 1)[0]
    blocks = [part.split("```", 1)[0] for part in section.split("```toml\n")[1:]]
    loaded = [load(written(tmp_path, block)) for block in blocks]
    assert [[destination.name for _, destination in topology.destinations()]
            for topology in loaded] == [["eu", "ap"], ["eu", "us-west", "ap"],
                                        ["orders-eu", "users-eu"]]


def test_check_refuses_a_profile_the_aws_config_files_do_not_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = written(tmp_path, ONE_INTO_THREE.replace('profile = "west"', 'profile = "east"'))
    assert main(["check", "--config", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"replicator: error: --config {path}: path[0] destination 'us-west': AWS profile "
        "'east' is not in the AWS config files (~/.aws/config, or AWS_CONFIG_FILE): add "
        "it, or name another\n")


def test_each_path_has_single_path_settings_under_the_topologys_task(tmp_path: Path) -> None:
    topology = load(written(tmp_path, TWO_INTO_ONE))
    (orders, to_eu), (customers, customers_eu) = topology.destinations()
    settings = topology.settings_for(customers, customers_eu, writers=3)
    assert (settings.source_table, settings.destination_table) == ("customers", "customers")
    assert (settings.task_name, settings.writers) == ("two-tables", 3)
    # The checkpoint table is by the first path's source, for every path.
    assert settings.checkpoint_region == "us-east-1"
    placed = load(written(tmp_path, TWO_INTO_ONE.replace(
        'task = "two-tables"\n',
        'task = "two-tables"\ncheckpoint = { region = "eu-west-1" }\n')))
    assert placed.settings_for(orders, to_eu).checkpoint_region == "eu-west-1"
    assert placed.settings_for(orders, to_eu).checkpoint_endpoint is None


TWO_WAY = """
task = "two-way"
[[path]]
source = { table = "orders", region = "us-east-1" }
destination = [{ name = "to-eu", table = "orders", region = "eu-west-1" }]
[[path]]
source = { table = "orders", region = "eu-west-1" }
destination = [{ name = "to-us", table = "orders", region = "us-east-1" }]
"""

#: Every bad topology input, and the message ``run``, ``copy`` and ``check`` give for it.
BAD_INPUTS = {
    "unknown key": (ONE_INTO_THREE.replace('name = "eu"\ntable', 'name = "eu"\ntabel', 1),
                    "path[0].destination[0].tabel: unknown key (did you mean table?)"),
    "no destination": ('task = "t-1"\n[[path]]\nsource = { table = "orders", '
                       'region = "us-east-1" }\ndestination = []\n',
                       "path[0].destination: a path needs at least one [[path.destination]]"),
    "one table written twice": (
        TWO_INTO_ONE.replace('table = "customers", region = "eu-west-1"',
                             'table = "orders", region = "eu-west-1"'),
        "table orders is written by destination 'orders-eu' too; a table has one source"),
    "its own source": (
        TWO_INTO_ONE.replace('{ name = "orders-eu", table = "orders", region = "eu-west-1" }',
                             '{ name = "orders-eu", table = "orders", region = "us-east-1" }'),
        "path[0] destination 'orders-eu': table orders is the path's own source"),
    "two-way": (TWO_WAY, "replicate into each other; two-way replication is not supported"),
    "undefined profile": (ONE_INTO_THREE.replace('profile = "west"', 'profile = "east"'),
                          "AWS profile 'east' is not in the AWS config files"),
    "name used twice": (TWO_INTO_ONE.replace('name = "customers-eu"', 'name = "orders-eu"'),
                        "path[1] destination 'orders-eu': the name is used twice"),
}


@pytest.mark.parametrize("how", ["run --config", "copy --config", "check --config",
                                 "REPLICATOR_CONFIG"])
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_every_bad_topology_input_exits_2_with_one_line_naming_it(
    case: str, how: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text, message = BAD_INPUTS[case]
    path = written(tmp_path, text)
    if how == "REPLICATOR_CONFIG":
        monkeypatch.setenv("REPLICATOR_CONFIG", str(path))
        args = ["run"]
        named = "REPLICATOR_CONFIG"
    else:
        command, flag = how.split()
        args = [command, flag, str(path)]
        named = "--config"
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith(f"replicator: error: {named} {path}: ")
    assert message in line
    assert "Traceback" not in captured.err


def test_the_path_settings_beside_a_topology_file_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = written(tmp_path, TWO_INTO_ONE)
    assert main(["run", "--config", str(path), "--source-table", "orders"]) == 2
    assert capsys.readouterr().err == (
        "replicator: error: --source-table: --config names the tables, the task and the "
        "destinations' rules; unset it, or leave out --config\n")
