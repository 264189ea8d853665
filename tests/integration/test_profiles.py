"""Two accounts: each side of the replication signs with its own AWS profile."""

from __future__ import annotations

import re
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from replicator.dev.workload import KEY_NAMES
from tests.integration.conftest import (
    DEADLINE,
    SOURCE_TABLE,
    Proxy,
    ReplicatorProcess,
    Servers,
    create_pair,
    environment_for,
    wait_equal,
)

pytestmark = pytest.mark.integration

KEYS = {"source-account": "AKIASOURCEACCOUNT001", "destination-account": "AKIADESTACCOUNT00001"}
CREDENTIAL = re.compile(r"Credential=([A-Z0-9]+)/")


class SigningProxy(Proxy):
    """A proxy that counts the access key ids that signed the requests it passes on."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.keys: Counter[str] = Counter()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        found = CREDENTIAL.search(request.headers.get("Authorization", ""))
        self.keys[found.group(1) if found else "unsigned"] += 1
        return await self.pass_on(request, await request.read())


def aws_files(directory: Path) -> dict[str, str]:
    """A config and a credentials file with one profile per account."""
    config = directory / "aws-config"
    credentials = directory / "aws-credentials"
    config.write_text("".join(f"[profile {name}]\nregion = us-east-1\n\n" for name in KEYS))
    credentials.write_text("".join(
        f"[{name}]\naws_access_key_id = {key}\naws_secret_access_key = secret-of-{name}\n\n"
        for name, key in KEYS.items()
    ))
    return {"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(credentials)}


@pytest.mark.timeout(300)
async def test_each_side_signs_with_its_own_profile(
    servers: Servers, source: Any, destination: Any, tmp_path: Path,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await create_pair(source, destination)
    async with (
        SigningProxy(servers.source.url).running() as source_side,
        SigningProxy(servers.destination.url).running() as destination_side,
    ):
        env = environment_for(
            servers, source_endpoint=source_side.url, destination_endpoint=destination_side.url,
            source_profile="source-account", destination_profile="destination-account",
        )
        # The environment's own keys (LOCAL_CREDENTIALS) are there too: a profile named
        # in the settings wins over them.
        worker = spawn("two-accounts", {**env, **aws_files(tmp_path)})
        await worker.wait_for_event("shard started")
        for n in range(10):
            await source.put_item(TableName=SOURCE_TABLE,
                                  Item={"pk": {"S": f"k{n}"}, "sk": {"N": "1"}})
        await wait_equal(source, destination, KEY_NAMES, processes=[worker])
        worker.send(signal.SIGTERM)
        assert await worker.wait() == 0, worker.report()

    print(f"\nsource side signed by {dict(source_side.keys)}, "
          f"destination side by {dict(destination_side.keys)}")
    # The source, its stream and the checkpoint table (on the source's endpoint by default).
    assert set(source_side.keys) == {KEYS["source-account"]}
    assert set(destination_side.keys) == {KEYS["destination-account"]}
    assert destination_side.keys[KEYS["destination-account"]] >= 2  # DescribeTable, a write


@pytest.mark.timeout(120)
async def test_an_unknown_profile_is_a_one_line_error(
    servers: Servers, source: Any, destination: Any, tmp_path: Path,
    spawn: Callable[..., ReplicatorProcess],
) -> None:
    await create_pair(source, destination)
    worker = spawn("no-profile", {
        **environment_for(servers, destination_profile="nobody"), **aws_files(tmp_path)})
    assert await worker.wait(within=DEADLINE) == 2, worker.report()
    (line,) = worker.stderr().strip().splitlines()
    assert line.startswith(
        "replicator: error: REPLICATOR_DESTINATION_PROFILE: AWS profile 'nobody' is not in "
        "the AWS config files"), line
    assert "Traceback" not in worker.stdout()
