"""The runner's build and cache: content keys, atomic writes, recompilation of a broken
compiled artifact, callers that wait for the background build, and a failed build's error."""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio
import pytest

from dynamic_workflows.sandbox._wasm import RunnerBuildError, WasmBackend, _build

from .conftest import ScriptedOps, event, load

pytestmark = pytest.mark.wasm


def test_component_key_follows_every_guest_file() -> None:
    files = _build.guest_files()
    assert {"dynwf_guest.py", "wit/runner.wit", "dynamic_workflows/sdk/_step.py"} <= set(files)
    key = _build.component_key(files)
    assert key == _build.component_key(dict(files))
    for name in files:
        changed = {**files, name: files[name] + b"\n"}
        assert _build.component_key(changed) != key, name


def _seed(cache: Path, wasm_runner: Path) -> Path:
    """A cache holding only the component (no compiled artifact), copied from the real one."""
    component = wasm_runner.parent / f"runner-{_build.component_key()}.wasm"
    cache.mkdir(parents=True)
    shutil.copy(component, cache / component.name)
    return cache / component.name


async def test_callers_wait_for_the_background_compile_and_bad_artifacts_are_redone(
    wasm_runner: Path, fresh_cache: Path
) -> None:
    component = _seed(fresh_cache, wasm_runner)
    compiled = fresh_cache / f"runner-{_build.compiled_key(component)}.cwasm"
    compiled.write_bytes(b"not a compiled component")
    lines: list[str] = []
    backend = WasmBackend(progress=lines.append)
    backend.start()  # compiles in the background; the first call waits for it
    try:
        isolate = await load(backend, {"main": "class W:\n    def __init__(s, c, e):\n"
                                       "        pass\n    async def run(s, e, step):\n"
                                       "        return 'ok'\n"})  # fmt: skip
        result = await isolate.run_workflow("W", event(), ScriptedOps(), {}, step_limit=10)
    finally:
        await backend.aclose()
    assert result.value == "ok"
    assert any("unusable" in line for line in lines), lines
    assert any("compiled" in line for line in lines), lines
    assert (await anyio.Path(compiled).read_bytes())[:4] == b"\x7fELF"  # garbage replaced
    left = sorted([p.name async for p in anyio.Path(fresh_cache).iterdir()])
    assert left == sorted([component.name, compiled.name])  # no temp files left behind


async def test_a_failed_build_is_a_clear_error_for_every_caller(
    fresh_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = _build.guest_files

    def broken() -> dict[str, bytes]:
        files = real()
        files["wit/runner.wit"] += b"\nthis is not wit\n"
        return files

    monkeypatch.setattr(_build, "guest_files", broken)
    backend = WasmBackend()
    backend.start()
    try:
        for _ in range(2):
            with pytest.raises(RunnerBuildError, match="componentize-py failed"):
                await backend.new_isolate()
        report = backend.confinement_report()
        assert report["runner_ready"] is False and "componentize-py" in report["runner_error"]
    finally:
        await backend.aclose()
    assert not [p async for p in anyio.Path(fresh_cache).glob("*.wasm")]


def test_old_artifacts_are_pruned(tmp_path: Path) -> None:
    import os

    paths = []
    for i in range(6):
        path = tmp_path / f"runner-{i}.cwasm"
        path.write_bytes(b"x")
        os.utime(path, (1000 + i, 1000 + i))
        paths.append(path)
    (tmp_path / "runner-0.wasm").write_bytes(b"other kind")
    _build._prune("cwasm", paths[5])
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["runner-0.wasm", "runner-3.cwasm", "runner-4.cwasm", "runner-5.cwasm"]
