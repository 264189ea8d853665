"""Selective replication in the topology file and the single-path settings: each rule
read as given, and each bad input an exit 2 with one line naming the setting."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from replicator.aws.values import BotoValues
from replicator.cli.main import main
from replicator.commands.startup import Prepared, check_rules
from replicator.config import Settings
from replicator.errors import StartupCheckError
from replicator.rules.selection import OnPoison
from replicator.topology import load, single_path

RULES = """
task = "rules"
[[path]]
source = { table = "orders", region = "us-east-1" }
[[path.destination]]
name = "partner"
table = "orders-partner"
region = "eu-west-1"
filter = { dynamodb = { NewImage = { tenant = { S = ["acme"] } } } }
exclude = ["secret"]
rename = { nick = "nickname" }
skip_ttl_deletes = true
on_poison = "dead-letter"
max_wcu = 500
[[path.destination]]
name = "json"
table = "orders-json"
region = "eu-west-1"
filter = '{"eventName": ["INSERT", "MODIFY"]}'
include = ["tenant"]
"""


def written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "topology.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_topology_file_gives_each_destination_its_rules(tmp_path: Path) -> None:
    (_, partner), (_, as_json) = load(written(tmp_path, RULES)).destinations()
    rules = partner.rules(None)
    assert (partner.max_wcu, as_json.max_wcu) == (500, None)
    assert rules.filter is not None
    assert rules.filter.mentions("dynamodb", "NewImage")
    assert rules.projection is not None
    assert rules.projection.apply({"pk": {"S": "a"}, "secret": {"S": "s"},
                                   "nick": {"S": "n"}}, ["pk"]) == {
        "pk": {"S": "a"}, "nickname": {"S": "n"}}
    assert rules.skip_ttl_deletes
    assert rules.on_poison is OnPoison.DEAD_LETTER
    other = as_json.rules(None)
    assert other.filter is not None
    assert other.filter.matches({"eventName": "INSERT"})
    assert other.keeps_removed
    assert other.on_poison is OnPoison.STOP


def test_the_single_path_settings_make_the_same_rules() -> None:
    settings = Settings(source_table="orders", destination_table="orders-partner",
                        source_region="us-east-1", filter='{"eventName": ["INSERT"]}',
                        exclude="secret, pin", rename="nick=nickname", on_poison="dead-letter",
                        max_wcu=250)
    (_, destination), = single_path(settings).destinations()
    assert destination.exclude == ["secret", "pin"]
    assert destination.rename == {"nick": "nickname"}
    assert destination.rules(None).on_poison is OnPoison.DEAD_LETTER
    assert destination.max_wcu == 250


#: Bad rules in a topology file, and what the one line says.
BAD_FILES = {
    "malformed pattern": (RULES.replace(
        'filter = { dynamodb = { NewImage = { tenant = { S = ["acme"] } } } }',
        "filter = '{\"eventName\": [\"INSERT\"'"),
        "path[0].destination[0].filter: not valid JSON"),
    "unknown operator": (RULES.replace('S = ["acme"]', 'S = [{ prefixx = "ac" }]'),
                         'dynamodb.NewImage.tenant.S: unknown operator "prefixx"'),
    "transform that cannot be imported": (
        RULES.replace('skip_ttl_deletes = true', 'transform = "no_such_module:mask"'),
        "path[0].destination[0].transform: cannot import module no_such_module"),
    "transform without a function": (
        RULES.replace('skip_ttl_deletes = true', 'transform = "json:no_such_function"'),
        "module json has no attribute no_such_function"),
    "include and exclude": (RULES.replace('include = ["tenant"]',
                                          'include = ["tenant"]\nexclude = ["x"]'),
                            "path[0].destination[1]: include and exclude are both set"),
    "unknown on_poison": (RULES.replace('on_poison = "dead-letter"', 'on_poison = "skip"'),
                          "path[0].destination[0].on_poison"),
}


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("case", list(BAD_FILES))
def test_every_bad_rule_in_a_topology_file_exits_2_with_one_line(
        case: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text, message = BAD_FILES[case]
    path = written(tmp_path, text)
    assert main([command, "--config", str(path)]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith(f"replicator: error: --config {path}: ")
    assert message in line
    assert "Traceback" not in captured.err


#: Bad single-path rule settings, and what the one line says.
BAD_SETTINGS = {
    "malformed pattern": (["--filter", '{"eventName": ["INSERT"'],
                          "REPLICATOR_FILTER: not valid JSON"),
    "unknown operator": (["--filter", '{"eventName": [{"prefixx": "IN"}]}'],
                         'REPLICATOR_FILTER: eventName: unknown operator "prefixx"'),
    "transform that cannot be imported": (
        ["--transform", "no_such_module:mask"],
        "REPLICATOR_TRANSFORM: cannot import module no_such_module"),
    "transform that is no function": (["--transform", "mask"],
                                      "REPLICATOR_TRANSFORM: 'mask' is not "
                                      "package.module:function"),
    "rename that is no pair": (["--rename", "nick"],
                               "REPLICATOR_RENAME: 'nick' is not old=new"),
    "include and exclude": (["--include", "a", "--exclude", "b"],
                            "include and exclude are both set"),
}


@pytest.mark.parametrize("case", list(BAD_SETTINGS))
def test_every_bad_rule_setting_exits_2_with_one_line(
        case: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    flags, message = BAD_SETTINGS[case]
    monkeypatch.setenv("REPLICATOR_SOURCE_TABLE", "orders")
    monkeypatch.setenv("REPLICATOR_DESTINATION_TABLE", "orders-replica")
    monkeypatch.setenv("REPLICATOR_SOURCE_REGION", "us-east-1")
    monkeypatch.setenv("REPLICATOR_SOURCE_ENDPOINT", "http://127.0.0.1:9")
    assert main(["run", *flags]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith("replicator: error: ")
    assert message in line
    assert "Traceback" not in captured.err


def prepared(view_type: str) -> Prepared:
    return Prepared(stream_arn="arn", view_type=view_type, source_table={
        "TableName": "orders", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                                             {"AttributeName": "sk", "KeyType": "RANGE"}]})


def test_a_filter_on_a_new_image_stream_is_refused(tmp_path: Path) -> None:
    (_, partner), (_, as_json) = load(written(tmp_path, RULES)).destinations()
    with pytest.raises(StartupCheckError) as refused:
        check_rules(partner, prepared("NEW_IMAGE"))
    assert str(refused.value).startswith(
        "destination 'partner' has a filter, which needs the old image of each changed item, "
        "but the stream of source table orders has StreamViewType NEW_IMAGE")
    assert "NEW_AND_OLD_IMAGES" in str(refused.value)
    check_rules(partner, prepared("NEW_AND_OLD_IMAGES"))
    check_rules(as_json.model_copy(update={"filter": None}), prepared("NEW_IMAGE"))


@pytest.mark.parametrize(("projection", "problem"), [
    ({"exclude": ["sk"]}, "exclude lists key attribute sk"),
    ({"rename": {"pk": "id"}}, "rename renames key attribute pk"),
])
def test_a_projection_that_drops_or_renames_a_key_attribute_is_refused(
        projection: dict[str, object], problem: str, tmp_path: Path) -> None:
    (_, partner), _ = load(written(tmp_path, RULES)).destinations()
    with pytest.raises(StartupCheckError) as refused:
        check_rules(partner.model_copy(update={"exclude": [], "rename": {}, **projection}),
                    prepared("NEW_AND_OLD_IMAGES"))
    assert str(refused.value) == (
        "destination 'partner': the projection of source table orders (include, exclude, "
        f"rename): {problem}: key attributes "
        + ("are always kept" if "exclude" in projection else "keep their names"))


def test_the_readmes_selective_replication_example_is_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### Selective replication", 1)[1].split("\n### ", 1)[0]
    (block,) = [part.split("```", 1)[0] for part in section.split("```toml\n")[1:]]
    # The example's transform lives in the user's package; any importable one will do.
    block = block.replace("analytics.rules:mask_email", "tests.unit.test_rules:mask_email")
    (_, acme), (_, analytics), (_, archive) = load(written(tmp_path, block)).destinations()
    acme_rules = acme.rules(None)
    assert acme_rules.filter is not None
    assert acme_rules.filter.matches({"dynamodb": {"NewImage": {"tenant": {"S": "acme"}}}})
    assert not acme_rules.filter.matches({"dynamodb": {"NewImage": {"tenant": {"S": "x"}}}})
    assert acme_rules.on_poison is OnPoison.DEAD_LETTER
    assert analytics.rules(BotoValues()).transform is not None
    assert archive.rules(None).skip_ttl_deletes
