"""The admin API: auth, tenants and versions, instances and their controls, bad bodies."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from harness import TOKEN, Running, module_server, wait_status, wait_step

API = "/admin/api"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with module_server(tmp_path_factory.mktemp("dynwf")) as running:
        yield running


@pytest.fixture
def client(server: Running) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def _start(client: httpx.Client, **params: object) -> dict[str, str]:
    r = client.post("/t/probe/start", json={"name": "Ada", **params})
    assert r.status_code == 201, r.text
    instance_id = r.json()["id"]
    items = client.get(f"{API}/instances", params={"tenant": "probe", "limit": 500}).json()
    (row,) = [i for i in items["items"] if i["id"] == instance_id]
    return {"id": instance_id, "uid": row["uid"]}


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}"}],
)
def test_admin_api_refuses_without_the_token(server: Running, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=server.url, headers=headers) as anon:
        for path in ("/tenants", "/instances", "/info"):
            r = anon.get(API + path)
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "unauthorized"
        assert anon.put(f"{API}/tenants/x", json={"files": {"index.py": ""}}).status_code == 401


def test_openapi_is_served(client: httpx.Client) -> None:
    doc = client.get(f"{API}/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/admin/api/instances/{uid}/events" in doc["paths"]
    assert "EventBody" in doc["components"]["schemas"]


def test_tenants_are_listed_with_versions(client: httpx.Client) -> None:
    items = client.get(f"{API}/tenants").json()["items"]
    ids = {t["id"] for t in items}
    assert {"onboarding", "etl", "agent", "probe"} <= ids
    etl = next(t for t in items if t["id"] == "etl")
    assert len(etl["version"]) >= 16
    assert etl["source"] == "dir"
    versions = client.get(f"{API}/tenants/etl/versions").json()
    assert versions["current"] == etl["version"]
    files = client.get(f"{API}/tenants/etl/versions/{etl['version']}").json()["files"]
    assert set(files) == {"index.py", "transforms.py"}
    assert client.get(f"{API}/tenants/nobody/versions").status_code == 404


def test_deploy_creates_a_version_and_serves_it(client: httpx.Client) -> None:
    code = (
        "from dynamic_workflows.sdk import Response\n"
        "async def fetch(request, env):\n"
        "    return Response.json({'v': VERSION})\n"
    )
    r1 = client.put(f"{API}/tenants/fresh", json={"files": {"index.py": "VERSION = 1\n" + code}})
    assert r1.status_code == 201
    assert client.get("/t/fresh/").json() == {"v": 1}
    same = client.put(f"{API}/tenants/fresh", json={"files": {"index.py": "VERSION = 1\n" + code}})
    assert same.status_code == 200
    assert same.json()["created"] is False
    r2 = client.put(f"{API}/tenants/fresh", json={"files": {"index.py": "VERSION = 2\n" + code}})
    assert r2.json()["version"] != r1.json()["version"]
    assert client.get("/t/fresh/").json() == {"v": 2}
    versions = client.get(f"{API}/tenants/fresh/versions").json()
    assert [v["version"] for v in versions["items"]] == [r2.json()["version"], r1.json()["version"]]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "malformed JSON"),
        (b"", 400, "JSON body is required"),
        (b'{"files": ["index.py"]}', 422, "files"),
        (b'{"files": {"index.py": 3}}', 422, "files.index.py"),
        (b'{"files": {"main.py": "x = 1"}}', 422, "index.py is missing"),
        (b'{"files": {"../evil.py": "x = 1", "index.py": ""}}', 422, "dotted identifiers"),
        (b'{"files": {"index.py": ""}, "extra": 1}', 422, "extra"),
    ],
)
def test_bad_deploy_bodies_are_refused_and_change_nothing(
    client: httpx.Client, body: bytes, status: int, fragment: str
) -> None:
    before = client.get(f"{API}/tenants/probe/versions").json()
    r = client.put(
        f"{API}/tenants/probe", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == status
    assert fragment in r.json()["error"]["message"]
    assert client.get(f"{API}/tenants/probe/versions").json() == before


def test_oversized_bodies_are_413(server: Running, client: httpx.Client) -> None:
    big = b'{"type": "go", "payload": "' + b"x" * (server.config.max_body_bytes + 8192) + b'"}'
    r = client.post(
        f"{API}/instances/whatever/events",
        content=big,
        headers={"content-type": "application/json"},
    )
    assert r.status_code in (404, 413)  # unknown uid is checked first
    ids = _start(client)
    r = client.post(
        f"{API}/instances/{ids['uid']}/events",
        content=big,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413
    assert "larger than" in r.json()["error"]["message"]
    huge = "x" * (server.config.max_code_bytes + 1)
    r = client.put(f"{API}/tenants/probe", json={"files": {"index.py": huge}})
    assert r.status_code == 413


def test_invalid_tenant_id_on_deploy(client: httpx.Client) -> None:
    r = client.put(f"{API}/tenants/Bad.Name", json={"files": {"index.py": ""}})
    assert r.status_code == 400
    assert "invalid tenant id" in r.json()["error"]["message"]


def test_instance_lifecycle_through_the_admin_api(client: httpx.Client) -> None:
    ids = _start(client)
    uid = ids["uid"]
    wait_step(client, uid, "go", "waiting")
    # the instance turns waiting once every branch of its run waits (a moment after the
    # step row does, when the run is in an isolate)
    st = wait_status(client, uid, "waiting")
    assert st["tenant"] == "probe"
    assert st["id"] == ids["id"]
    names = [(s["name"], s["kind"], s["state"]) for s in st["steps"]]
    assert names[:2] == [("greet", "do", "complete"), ("secret", "do", "complete")]
    assert st["steps"][0]["output"] == "hi"
    assert st["steps"][1]["output"] == "[REDACTED]"
    assert "tenantId" not in str(st["steps"])

    paused = client.post(f"{API}/instances/{uid}/pause").json()
    assert paused["status"] == "paused"
    assert client.post(f"{API}/instances/{uid}/resume").status_code == 200
    wait_status(client, uid, "waiting", "running")

    r = client.post(f"{API}/instances/{uid}/events", json={"type": "go", "payload": {"n": 1}})
    assert r.status_code == 202
    done = wait_status(client, uid, "complete", "errored")
    assert done["status"] == "complete"
    assert done["output"] == {"greeting": "hi", "go": {"n": 1}, "token_len": 6}

    again = client.post(f"{API}/instances/{uid}/events", json={"type": "go"})
    assert again.status_code == 409
    assert client.post(f"{API}/instances/{uid}/terminate").status_code == 409

    history = client.get(f"{API}/instances/{uid}/history").json()["items"]
    kinds = [h["kind"] for h in history]
    assert "event_received" in kinds
    assert kinds[-1] == "complete"

    assert client.post(f"{API}/instances/{uid}/restart").status_code == 200
    wait_step(client, uid, "go", "waiting")
    assert client.post(f"{API}/instances/{uid}/terminate").json()["status"] == "terminated"
    assert client.delete(f"{API}/instances/{uid}").json()["deleted"] is True
    assert client.get(f"{API}/instances/{uid}").status_code == 404
    assert client.post(f"{API}/instances/{uid}/pause").status_code == 404


def test_send_event_bodies_are_validated(client: httpx.Client) -> None:
    uid = _start(client)["uid"]
    for body, fragment in [
        ({"type": "bad type!"}, "type"),
        ({"type": 5}, "type"),
        ({"payload": 1}, "type"),
    ]:
        r = client.post(f"{API}/instances/{uid}/events", json=body)
        assert r.status_code == 422
        assert fragment in r.json()["error"]["message"]
    assert client.post(f"{API}/instances/{uid}/explode").status_code == 404
    client.post(f"{API}/instances/{uid}/terminate")


def test_instances_are_filtered_and_paged(client: httpx.Client) -> None:
    for _ in range(3):
        _start(client, wait=False)
    everything = client.get(f"{API}/instances", params={"tenant": "probe", "limit": 500}).json()
    assert everything["total"] >= 3
    assert all(i["tenant"] == "probe" for i in everything["items"])
    page1 = client.get(f"{API}/instances", params={"tenant": "probe", "limit": 2}).json()
    page2 = client.get(
        f"{API}/instances", params={"tenant": "probe", "limit": 2, "offset": 2}
    ).json()
    assert len(page1["items"]) == 2
    assert {i["uid"] for i in page1["items"]}.isdisjoint({i["uid"] for i in page2["items"]})
    for item in everything["items"]:
        if item["status"] != "complete":
            wait_status(client, item["uid"], "complete", "waiting", "terminated", "errored")
    complete = client.get(
        f"{API}/instances", params={"tenant": "probe", "status": "complete", "limit": 500}
    ).json()
    assert complete["total"] >= 3
    assert all(i["status"] == "complete" for i in complete["items"])
    assert client.get(f"{API}/instances", params={"status": "sleepy"}).status_code == 400
    assert client.get(f"{API}/instances", params={"limit": "many"}).status_code == 400
    assert client.get(f"{API}/instances", params={"tenant": "nobody"}).status_code == 404


def test_create_through_the_admin_api_and_tenant_isolation(client: httpx.Client) -> None:
    r = client.post(f"{API}/tenants/probe/instances", json={"id": "shared-id", "params": {}})
    assert r.status_code == 201
    r2 = client.post(f"{API}/tenants/etl/instances", json={"id": "shared-id", "params": {}})
    assert r2.status_code == 201  # ids are unique per tenant (S38)
    assert r.json()["uid"] != r2.json()["uid"]
    dup = client.post(f"{API}/tenants/probe/instances", json={"id": "shared-id"})
    assert dup.status_code == 400
    # the probe tenant cannot see the etl tenant's instance through its binding
    assert client.get("/t/probe/get/shared-id").json()["id"] == "shared-id"
    assert client.get("/t/etl/runs/shared-id").status_code == 200
    bad = client.post(f"{API}/tenants/probe/instances", json={"id": "no spaces allowed"})
    assert bad.status_code in (400, 422)


def test_playground_runs_code_as_a_throwaway_tenant(client: httpx.Client) -> None:
    code = (
        "from dynamic_workflows.sdk import WorkflowEntrypoint\n"
        "class TenantWorkflow(WorkflowEntrypoint):\n"
        "    async def run(self, event, step):\n"
        "        return await step.do('double', lambda: event.payload['n'] * 2)\n"
    )
    r = client.post(f"{API}/playground/runs", json={"code": code, "payload": {"n": 21}})
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["tenant"].startswith("playground-")
    done = wait_status(client, run["uid"], "complete", "errored")
    assert done["output"] == 42
    bad = client.post(f"{API}/playground/runs", json={"code": "def (:\n", "payload": {}})
    assert bad.status_code == 422
    assert "line 1" in bad.json()["error"]["message"]
    listed = {t["id"] for t in client.get(f"{API}/tenants").json()["items"]}
    assert run["tenant"] not in listed


def test_changed_tenant_folders_are_deployed_on_request(
    server: Running, client: httpx.Client
) -> None:
    folder = server.tenants_dir / "late"
    folder.mkdir()
    (folder / "helper.py").write_text("ANSWER = 41\n")
    (folder / "index.py").write_text(
        "from helper import ANSWER\n"
        "from dynamic_workflows.sdk import Response\n"
        "async def fetch(request, env):\n"
        "    return Response.json({'answer': ANSWER})\n"
    )
    deployed = client.post(f"{API}/tenants/rescan").json()["deployed"]
    assert [d["tenant"] for d in deployed] == ["late"]
    assert client.get("/t/late/").json() == {"answer": 41}
    (folder / "helper.py").write_text("ANSWER = 42\n")
    (deployed2,) = client.post(f"{API}/tenants/rescan").json()["deployed"]
    assert deployed2["version"] != deployed[0]["version"]
    assert client.get("/t/late/").json() == {"answer": 42}
    assert client.post(f"{API}/tenants/rescan").json()["deployed"] == []


def test_info_reports_live_isolates_and_their_confinement(client: httpx.Client) -> None:
    assert client.get("/t/probe/echo").status_code == 200
    info = client.get(f"{API}/info").json()
    assert info["backend"] == "subprocess"
    assert info["auth"] is True
    probe = [i for i in info["isolates"] if i["worker"] == "probe"]
    assert probe
    assert probe[0]["confinement"]


def test_cross_origin_browser_requests_are_refused(server: Running, client: httpx.Client) -> None:
    for origin in ("http://evil.example", "null"):
        r = client.post(f"{API}/tenants/rescan", headers={"origin": origin})
        assert r.status_code == 403
        assert "cross-origin" in r.json()["error"]["message"]
    assert client.post(f"{API}/tenants/rescan", headers={"origin": server.url}).status_code == 200


def test_tenant_pages_are_sandboxed_and_admin_pages_locked_down(client: httpx.Client) -> None:
    r = client.get("/t/probe/echo")
    assert "sandbox" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    for path in ("/admin/", "/admin/playground"):
        page = client.get(path)
        assert page.status_code == 200
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert client.get("/admin/static/common.js").status_code == 200
    assert client.get("/").status_code in (200, 307)
