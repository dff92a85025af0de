"""The dispatcher restarted mid-wait: the instance finishes on the code version it began
with (S39), completed steps are not run again, and new instances take the new code."""

from __future__ import annotations

from pathlib import Path

from harness import TOKEN, serve, wait_status, wait_step


def test_instances_survive_a_restart_on_their_version(tmp_path: Path) -> None:
    with serve(tmp_path, admin_token=TOKEN) as first, first.client() as client:
        instance_id = client.post("/t/probe/start", json={"name": "Ada"}).json()["id"]
        rows = client.get("/admin/api/instances", params={"tenant": "probe"}).json()["items"]
        uid = next(i["uid"] for i in rows if i["id"] == instance_id)
        before = wait_step(client, uid, "go", "waiting")
        old_version = before["version"]
        index = first.tenants_dir / "probe" / "index.py"
        index.write_text(
            index.read_text().replace(
                '"token_len": len(token)}', '"token_len": len(token), "v": 2}'
            )
        )
        deployed = client.post("/admin/api/tenants/rescan").json()["deployed"]
        assert [d["tenant"] for d in deployed] == ["probe"]
        assert deployed[0]["version"] != old_version

    with serve(tmp_path, admin_token=TOKEN) as second, second.client() as client:
        st = wait_step(client, uid, "go", "waiting")
        assert st["version"] == old_version
        sent = client.post(f"/admin/api/instances/{uid}/events", json={"type": "go", "payload": 7})
        assert sent.status_code == 202
        done = wait_status(client, uid, "complete", "errored")
        assert done["output"] == {"greeting": "hi", "go": 7, "token_len": 6}  # old code: no "v"
        history = client.get(f"/admin/api/instances/{uid}/history").json()["items"]
        greet_attempts = [
            h for h in history if h["kind"] == "attempt_started" and h["step"] == "greet-1"
        ]
        assert len(greet_attempts) == 1

        new_id = client.post("/t/probe/start", json={"name": "Bo", "wait": False}).json()["id"]
        st = client.get(f"/t/probe/get/{new_id}").json()
        rows = client.get("/admin/api/instances", params={"tenant": "probe"}).json()["items"]
        new_uid = next(i["uid"] for i in rows if i["id"] == new_id)
        new = wait_status(client, new_uid, "complete", "errored")
        assert new["output"] == {"greeting": "hi", "token_len": 6, "v": 2}  # new code
        assert new["version"] != old_version
        assert st["id"] == new_id
