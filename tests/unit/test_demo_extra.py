"""moto comes with the ``demo`` extra: without it, ``replicator demo`` says how to get it."""

from __future__ import annotations

import importlib.util
from importlib.machinery import ModuleSpec
from typing import Any

import pytest

from replicator import cli
from replicator.dev import local


@pytest.fixture
def no_moto(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``find_spec`` finds no moto (and finds everything else as before); the names asked."""
    asked: list[str] = []
    find_spec = importlib.util.find_spec

    def without_moto(name: str, *args: Any, **kwargs: Any) -> ModuleSpec | None:
        asked.append(name)
        if name == "moto" or name.startswith("moto."):
            return None
        return find_spec(name, *args, **kwargs)

    monkeypatch.setattr(local.importlib.util, "find_spec", without_moto)
    return asked


def test_the_demo_without_moto_is_one_line_naming_the_extra(
    no_moto: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[local.MotoServer] = []
    monkeypatch.setattr(local.MotoServer, "__enter__", lambda self: started.append(self))
    code = cli.main(["demo"])
    captured = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in captured.err + captured.out
    assert captured.err.splitlines() == [
        "replicator: error: the demo runs on moto's server, and moto is not installed: "
        "pip install 'replicator[demo]'"
    ]
    assert "moto" in no_moto
    assert started == [], "no server is started without moto"


def test_a_local_server_without_moto_names_the_extra_too(no_moto: list[str]) -> None:
    server = local.MotoServer()
    with pytest.raises(local.StartupCheckError, match=r"pip install 'replicator\[demo\]'"):
        server.start()
    assert server._process is None, "no subprocess is started"
