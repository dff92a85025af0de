"""The ``dynwf`` commands that talk to a running server, against the real one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import REPO, TOKEN, Running, module_server, wait_status
from typer.testing import CliRunner

from dynamic_workflows.cli import app
from dynamic_workflows.server import ServerConfig


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with module_server(tmp_path_factory.mktemp("dynwf-cli")) as running:
        yield running


def _cli(server: Running, *args: str) -> tuple[int, str]:
    runner = CliRunner()
    env = {"DYNWF_URL": server.url, "DYNWF_ADMIN_TOKEN": TOKEN, "COLUMNS": "200"}
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.output


def test_cli_lists_inspects_and_signals(server: Running) -> None:
    code, out = _cli(server, "tenants")
    assert code == 0
    assert "onboarding" in out and "probe" in out
    with server.client() as client:
        instance_id = client.post("/t/probe/start", json={"name": "Cli"}).json()["id"]
        rows = client.get("/admin/api/instances", params={"tenant": "probe", "limit": 500}).json()
        uid = next(i["uid"] for i in rows["items"] if i["id"] == instance_id)
        code, out = _cli(server, "instances", "--tenant", "probe")
        assert code == 0
        assert uid in out
        wait_status(client, uid, "waiting")
        code, out = _cli(server, "send-event", uid, "go", "--payload", '{"via": "cli"}')
        assert code == 0, out
        wait_status(client, uid, "complete")
    code, out = _cli(server, "status", uid)
    assert code == 0
    assert "complete" in out and "greet" in out and '"via": "cli"' in out
    code, out = _cli(server, "logs", "probe")
    assert code == 0
    assert "probe greets Cli" in out


def test_cli_errors_are_one_line_and_non_zero(server: Running) -> None:
    code, out = _cli(server, "status", "no-such-uid")
    assert code == 1
    assert "404" in out and "no-such-uid" in out
    code, out = _cli(server, "send-event", "x", "go", "--payload", "{bad")
    assert code == 1
    assert "not valid JSON" in out
    runner = CliRunner()
    result = runner.invoke(
        app, ["tenants"], env={"DYNWF_URL": server.url, "DYNWF_ADMIN_TOKEN": "nope"}
    )
    assert result.exit_code == 1
    assert "401" in result.output


def test_no_token_means_loopback_only() -> None:
    assert ServerConfig(host="0.0.0.0", admin_token="").safe_host()[0] == "127.0.0.1"
    assert ServerConfig(host="0.0.0.0", admin_token="t").safe_host() == ("0.0.0.0", None)


def test_cli_run_follows_an_instance_to_its_end(tmp_path: Path) -> None:
    runner = CliRunner()
    store = f"sqlite:///{tmp_path}/run.db"
    ok = runner.invoke(
        app,
        [
            "run",
            str(REPO / "tenants" / "etl"),
            "-p",
            '{"flaky_attempts": 1, "retry_delay": "10 ms"}',
            "--store",
            store,
        ],
        env={"COLUMNS": "200"},
    )
    assert ok.exit_code == 0, ok.output
    assert "extract attempt 2: 3 records" in ok.output
    assert '"revenue": 41.75' in ok.output
    bad = runner.invoke(
        app,
        [
            "run",
            str(REPO / "tenants" / "etl"),
            "-p",
            '{"flaky_attempts": 0, "records": [1]}',
            "--store",
            store,
        ],
        env={"COLUMNS": "200"},
    )
    assert bad.exit_code == 1
    assert "BadRecord" in bad.output
    missing = runner.invoke(app, ["run", str(tmp_path)])
    assert missing.exit_code == 1
    assert "no index.py" in missing.output
