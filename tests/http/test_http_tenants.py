"""Tenant traffic: routing by header and by path, errors, limits."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from harness import Running, module_server, wait_for


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with module_server(tmp_path_factory.mktemp("dynwf")) as running:
        yield running


@pytest.fixture
def client(server: Running) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def test_header_routing_reaches_the_tenant_fetch(client: httpx.Client) -> None:
    r = client.post(
        "/echo?x=1", content=b"hello", headers={"x-tenant-id": "probe", "x-probe": "p1"}
    )
    assert r.status_code == 200
    body = r.json()
    assert body["method"] == "POST"
    assert body["body"] == "hello"
    assert body["header"] == "p1"
    assert body["url"].endswith("/echo?x=1")
    assert r.headers["x-probe-reply"] == "yes"


def test_path_routing_strips_the_prefix(client: httpx.Client) -> None:
    r = client.get("/t/probe/echo")
    assert r.status_code == 200
    assert r.json()["url"].endswith("/echo")
    assert client.get("/t/probe/nothing").status_code == 404


def test_unknown_tenant_is_a_json_404(client: httpx.Client) -> None:
    for r in (client.get("/t/nobody/x"), client.get("/x", headers={"x-tenant-id": "nobody"})):
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "unknown_tenant"
    r = client.get("/t/..%2Fetc/x")
    assert r.status_code == 404


def test_tenant_exception_is_a_500_without_the_traceback(
    server: Running, client: httpx.Client
) -> None:
    r = client.get("/t/probe/boom")
    assert r.status_code == 500
    error = r.json()["error"]
    assert error["code"] == "tenant_error"
    assert "kaboom" not in r.text
    lines = wait_for(
        lambda: [
            rec["line"] for rec in server.platform.logs.recent("probe") if "kaboom" in rec["line"]
        ],
        what="the traceback in the tenant's log stream",
    )
    assert lines


def test_tenant_over_its_cpu_limit_is_a_503_naming_it(client: httpx.Client) -> None:
    r = client.get("/t/probe/spin")
    assert r.status_code == 503
    error = r.json()["error"]
    assert error["limit"] == "cpu"
    assert "cpu" in error["message"]
    # the tenant is served again by a fresh isolate
    assert client.get("/t/probe/echo").status_code == 200


def test_an_example_tenant_runs_its_workflow_end_to_end(client: httpx.Client) -> None:
    r = client.post("/t/etl/runs", json={"flaky_attempts": 0})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]

    def finished() -> dict[str, object] | None:
        st: dict[str, object] = client.get(f"/t/etl/runs/{run_id}").json()
        return st if st["status"] in ("complete", "errored") else None

    st = wait_for(finished, what="the ETL run to finish")
    assert st["status"] == "complete"
    assert st["output"] == {"rows": 3, "units": 9, "revenue": 41.75, "top_sku": "TEA-02"}


def test_a_bad_record_fails_the_etl_without_retries(client: httpx.Client) -> None:
    r = client.post("/t/etl/runs", json={"flaky_attempts": 0, "records": [{"qty": 1}]})
    run_id = r.json()["id"]

    def finished() -> dict[str, object] | None:
        st: dict[str, object] = client.get(f"/t/etl/runs/{run_id}").json()
        return st if st["status"] in ("complete", "errored") else None

    st = wait_for(finished, what="the ETL run to fail")
    assert st["status"] == "errored"
    assert st["error"] == {"name": "BadRecord", "message": "record without a sku: {'qty': 1}"}
