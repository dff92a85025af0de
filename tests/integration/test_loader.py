"""WorkerLoader behaviours (issue 5): cached by id, the factory only on a miss, one isolate
for concurrent gets, LRU cap, idle timeout, reload after a crash, classes shipped by value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from dynamic_workflows.loader import InvalidWorkerCodeError, WorkerCode, WorkerLoader
from dynamic_workflows.sdk import Request, WorkerEntrypoint, WorkflowError

PID = """
import os
from dynamic_workflows.sdk import Response

async def fetch(request, env):
    if request.url == "/exit":
        os._exit(7)
    return Response.json({"pid": os.getpid(), "tag": env.TAG, "token": id(env)})

async def echo(x):
    return x
"""


def code(tag: str = "a") -> WorkerCode:
    return WorkerCode("index.py", {"index.py": PID}, env={"TAG": tag})


async def hello(loader: WorkerLoader, worker: str, factory: Any = None) -> dict[str, Any]:
    stub = loader.get(worker, factory or (lambda: code(worker)))
    response = await stub.get_entrypoint().fetch(Request(url="/"))
    assert response.status == 200
    return dict(json.loads(response.body_bytes()))


async def test_factory_runs_only_on_a_miss_and_may_be_async(tmp_path: Path) -> None:
    calls: list[str] = []

    async def factory() -> WorkerCode:
        calls.append("made")
        return code("async")

    async with WorkerLoader(backend="inprocess", code_dir=tmp_path) as loader:
        first = await hello(loader, "t", factory)
        second = await hello(loader, "t", factory)
    assert calls == ["made"]
    assert first == second
    assert first["tag"] == "async"


async def test_concurrent_gets_of_one_id_start_one_isolate(tmp_path: Path) -> None:
    async with WorkerLoader(backend="subprocess", code_dir=tmp_path) as loader:
        results: list[dict[str, Any]] = []

        async def one() -> None:
            results.append(await hello(loader, "same"))

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(one)
        assert len(loader.isolates()) == 1
    assert len({r["pid"] for r in results}) == 1


async def test_lru_cap_evicts_the_least_recently_used_idle_isolate(tmp_path: Path) -> None:
    async with WorkerLoader(backend="inprocess", code_dir=tmp_path, max_isolates=2) as loader:
        await hello(loader, "a")
        await hello(loader, "b")
        await hello(loader, "a")  # b is now the least recently used
        await hello(loader, "c")
        live = sorted(i["worker"] for i in loader.isolates())
    assert live == ["a", "c"]


async def test_idle_isolates_are_closed_and_reloaded_on_next_use(tmp_path: Path) -> None:
    async with WorkerLoader(backend="inprocess", code_dir=tmp_path, idle_timeout=0.05) as loader:
        await hello(loader, "idle")
        with anyio.fail_after(10):
            while loader.isolates():  # noqa: ASYNC110 - polls the loader's state
                await anyio.sleep(0.02)
        again = await hello(loader, "idle")
    assert again["tag"] == "idle"


async def test_a_crashed_isolate_is_reloaded_on_next_use(tmp_path: Path) -> None:
    async with WorkerLoader(backend="subprocess", code_dir=tmp_path) as loader:
        before = await hello(loader, "crashy")
        stub = loader.get("crashy", lambda: code("crashy"))
        with pytest.raises(WorkflowError):
            await stub.get_entrypoint().fetch(Request(url="/exit"))
        after = await hello(loader, "crashy")
    assert after["pid"] == before["pid"] == 1  # pid namespaces: each isolate is pid 1
    assert after["tag"] == "crashy"


async def test_redeploying_the_same_code_with_a_new_env_gets_a_fresh_isolate(
    tmp_path: Path,
) -> None:
    async with WorkerLoader(backend="inprocess", code_dir=tmp_path) as loader:
        first = await hello(loader, "t", lambda: code("one"))
        loader.deploy("t", code("two"))
        second = await hello(loader, "t")
    assert (first["tag"], second["tag"]) == ("one", "two")


class Greeter(WorkerEntrypoint):
    """Defined in host code; shipped by value."""

    async def greet(self, name: str) -> str:
        return f"hi {name} from {type(self).__name__}"


async def test_classes_defined_in_host_code_are_shipped_by_value(tmp_path: Path) -> None:
    async with WorkerLoader(backend="subprocess", code_dir=tmp_path) as loader:
        stub = loader.get("pickled", lambda: WorkerCode.from_entrypoint(Greeter))
        answer = await stub.get_entrypoint("Greeter").greet("Ada")
    assert answer == "hi Ada from Greeter"


def test_worker_code_version_is_a_content_hash() -> None:
    assert code("x").version == code("y").version  # env is not code
    changed = WorkerCode("index.py", {"index.py": PID + "\n# edit\n"})
    assert changed.version != code().version


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"main_module": "main.py", "modules": {"index.py": ""}}, "not among the modules"),
        ({"main_module": "../x.py", "modules": {"../x.py": ""}}, "dotted identifiers"),
        ({"main_module": "a.py", "modules": {"a.py": ""}, "global_outbound": object()}, "network"),
    ],
)
def test_invalid_worker_code_is_refused_clearly(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidWorkerCodeError, match=message):
        WorkerCode(**kwargs)


async def test_pinned_versions_survive_in_the_code_store(tmp_path: Path) -> None:
    old = code("v")
    async with WorkerLoader(backend="inprocess", code_dir=tmp_path) as loader:
        stub = loader.get("t", lambda: old)
        await stub.code()
    async with WorkerLoader(backend="inprocess", code_dir=tmp_path) as loader:
        new = WorkerCode("index.py", {"index.py": PID + "\n# v2\n"}, env={"TAG": "v2"})
        stub = loader.get("t", lambda: new)
        pinned = await stub.code_at(old.version)
        with pytest.raises(WorkflowError, match="not in the code store"):
            await stub.code_at("0" * 32)
    assert pinned.modules == old.modules and pinned.env == new.env


SLOW = """
import asyncio
from dynamic_workflows.sdk import Response

async def fetch(request, env):
    await asyncio.sleep(0.2)
    return Response.json({"ok": True})
"""


async def test_a_burst_past_the_cap_is_shed_when_calls_end(tmp_path: Path) -> None:
    async with WorkerLoader(backend="inprocess", code_dir=tmp_path, max_isolates=2) as loader:

        async def call(worker: str) -> None:
            stub = loader.get(worker, lambda: WorkerCode("index.py", {"index.py": SLOW}))
            assert (await stub.get_entrypoint().fetch(Request())).status == 200

        async with anyio.create_task_group() as tg:
            for worker in ("a", "b", "c", "d"):
                tg.start_soon(call, worker)
        assert len(loader.isolates()) <= 2


RETIRING = """
import asyncio, secrets
from dynamic_workflows.sdk import Response

TOKEN = secrets.token_hex(8)  # one per isolate

async def fetch(request, env):
    if request.url == "/bomb":
        return Response.json({"len": len(bytearray(10 ** 10))})
    if request.url == "/slow":
        await asyncio.sleep(0.5)
    return Response.json({"token": TOKEN})
"""


async def test_a_retiring_isolate_finishes_its_calls_and_the_next_call_gets_a_new_one(
    tmp_path: Path,
) -> None:
    async with WorkerLoader(backend="subprocess", code_dir=tmp_path) as loader:
        entry = loader.get("r", lambda: WorkerCode("index.py", {"index.py": RETIRING}))
        entrypoint = entry.get_entrypoint()
        first = json.loads((await entrypoint.fetch(Request(url="/"))).body_bytes())["token"]
        slow: list[str] = []

        async def slow_call() -> None:
            response = await entrypoint.fetch(Request(url="/slow"))
            slow.append(json.loads(response.body_bytes())["token"])

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow_call)
            with anyio.fail_after(10):  # the slow call is inside the isolate first
                while not any(i["in_flight"] for i in loader.isolates()):  # noqa: ASYNC110
                    await anyio.sleep(0.005)
            with pytest.raises(WorkflowError) as caught:
                await entrypoint.fetch(Request(url="/bomb"))
        after = json.loads((await entrypoint.fetch(Request(url="/"))).body_bytes())["token"]
    assert getattr(caught.value, "limit", None) == "memory"
    assert slow == [first]  # the call in flight finished in the retiring isolate
    assert after != first  # and the next call got a fresh one
