"""Server-Sent Events: a tenant's log line arrives live, late subscribers get a replay,
heartbeats keep idle streams open, and instance updates stream from the engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from harness import Running, in_background, module_server

API = "/admin/api"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with module_server(tmp_path_factory.mktemp("dynwf")) as running:
        yield running


@pytest.fixture
def client(server: Running) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def _events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    event, data = "message", ""
    for line in lines:
        if line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data += line[6:]
        elif not line and data:
            yield event, json.loads(data)
            event, data = "message", ""


def test_sse_delivers_a_tenant_log_line_live(server: Running, client: httpx.Client) -> None:
    with client.stream("GET", f"{API}/tenants/probe/logs") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _events(response.iter_lines())
        for kind, value in events:
            if kind == "comment" and value == "live":
                break
        sender = in_background(server, "GET", "/t/probe/log")
        for kind, value in events:
            if kind == "log" and value["line"] == "probe log line":
                assert value["tenant"] == "probe"
                assert value["stream"] in ("stdout", "log")
                break
    sender.join()


def test_late_subscribers_get_recent_lines_then_heartbeats(client: httpx.Client) -> None:
    assert client.get("/t/probe/log").status_code == 200
    with client.stream("GET", f"{API}/tenants/probe/logs") as response:
        events = _events(response.iter_lines())
        replayed = []
        for kind, value in events:
            if kind == "comment" and value == "live":
                break
            replayed.append(value["line"])
        assert "probe log line" in replayed
        for kind, value in events:
            if kind == "comment" and value == "heartbeat":
                break


def test_instance_logs_and_updates_stream(server: Running, client: httpx.Client) -> None:
    r = client.post("/t/probe/start", json={"name": "Grace", "wait": True})
    instance_id = r.json()["id"]
    rows = client.get(f"{API}/instances", params={"tenant": "probe", "limit": 500}).json()
    uid = next(i["uid"] for i in rows["items"] if i["id"] == instance_id)
    with client.stream("GET", f"{API}/instances/{uid}/logs") as response:
        for kind, value in _events(response.iter_lines()):
            if kind == "log" and value["line"] == "probe greets Grace":
                assert value["instance_id"] == instance_id
                break
    with client.stream("GET", f"{API}/watch", params={"uid": uid}) as response:
        events = _events(response.iter_lines())
        for kind, value in events:
            if kind == "comment" and value == "live":
                break
        sender = in_background(
            server, "POST", f"{API}/instances/{uid}/events", json={"type": "go", "payload": 1}
        )
        seen = []
        for kind, value in events:
            if kind == "instance":
                assert value["uid"] == uid
                assert value["tenant"] == "probe"
                seen.append(value["kind"])
                if value["kind"] == "complete":
                    break
        assert "event_received" in seen
    sender.join()
    assert client.get(f"{API}/tenants/nobody/logs").status_code == 404
    assert client.get(f"{API}/instances/nope/logs").status_code == 404
