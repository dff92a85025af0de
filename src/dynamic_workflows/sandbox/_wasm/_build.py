"""Build, compile and cache the generic runner component; never on the request path.

Two artifacts, each keyed by content and written atomically (temp file + ``os.replace``)
under :func:`cache_dir`:

- ``runner-<key>.wasm``: componentize-py's output, keyed by sha256 of the guest sources
  (guest module, allowlist, the bundled sdk), the WIT and componentize-py's version;
- ``runner-<key>.cwasm``: wasmtime's compiled form, keyed by sha256 of the component, the
  wasmtime version and the engine flags (epoch interruption changes the code). It is loaded
  with ``Component.deserialize_file`` (mmap: the page cache is shared by every process), and
  recompiled on any load error.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import wasmtime
from wasmtime import component

Progress = Callable[[str], None]
"""Receives one human-readable line per build stage."""

CACHE_ENV = "DYNWF_CACHE_DIR"
COMPONENTIZE_PY_VERSION = metadata.version("componentize-py")
WASMTIME_VERSION = metadata.version("wasmtime")
ENGINE_FLAGS = "epoch_interruption=1"
"""Part of the compiled artifact's key: code compiled with other flags does not load."""

_HERE = Path(__file__).resolve().parent
_SDK = _HERE.parent.parent / "sdk"
_GUEST_APP = "dynwf_guest"
_WORLD = "runner"
_FACADE = '''"""dynamic_workflows in the wasm runner: the sdk, under the names tenants import."""

from .sdk import *  # noqa: F403
from .sdk import __all__  # noqa: F401
'''


class RunnerBuildError(RuntimeError):
    """componentize-py or wasmtime could not produce the runner; the message says why."""


def cache_dir() -> Path:
    """``$DYNWF_CACHE_DIR`` or ``~/.cache/dynamic-workflows/wasm``."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "dynamic-workflows" / "wasm"


def guest_files() -> dict[str, bytes]:
    """What goes into the component, by path inside the build directory."""
    files = {
        f"{_GUEST_APP}.py": (_HERE / "guest" / f"{_GUEST_APP}.py").read_bytes(),
        "dynwf_allowlist.py": (_HERE / "_allowlist.py").read_bytes(),
        "dynamic_workflows/__init__.py": _FACADE.encode(),
        "wit/runner.wit": (_HERE / "guest" / "wit" / "runner.wit").read_bytes(),
    }
    for source in sorted(_SDK.glob("*.py")):
        files[f"dynamic_workflows/sdk/{source.name}"] = source.read_bytes()
    return files


def component_key(files: dict[str, bytes] | None = None) -> str:
    digest = hashlib.sha256(f"componentize-py {COMPONENTIZE_PY_VERSION}\n".encode())
    for name, data in sorted((files or guest_files()).items()):
        digest.update(f"{name}\n{len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()[:32]


def compiled_key(component_path: Path) -> str:
    digest = hashlib.sha256(f"wasmtime {WASMTIME_VERSION}\n{ENGINE_FLAGS}\n".encode())
    with component_path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:32]


def new_engine() -> wasmtime.Engine:
    """One engine per backend; these flags are the ones in :data:`ENGINE_FLAGS`."""
    config = wasmtime.Config()
    config.epoch_interruption = True
    return wasmtime.Engine(config)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


KEEP = 3
"""Artifacts of each kind kept in the cache (the newest); older ones are pruned."""


def _prune(kind: str, keep: Path) -> None:
    """Drop all but the newest :data:`KEEP` ``runner-*.<kind>`` files (never ``keep``).

    A process still using a pruned ``.cwasm`` keeps its mapping (Linux unlinks lazily)."""
    try:
        found = sorted(
            (p for p in keep.parent.glob(f"runner-*.{kind}") if p != keep),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
    except OSError:
        return
    for old in found[KEEP - 1 :]:
        with contextlib.suppress(OSError):
            old.unlink()


def _componentize_py() -> list[str]:
    script = Path(sys.executable).with_name("componentize-py")
    if script.exists():
        return [str(script)]
    found = shutil.which("componentize-py")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys, componentize_py; sys.exit(componentize_py.script())"]


def build_component(progress: Progress | None = None) -> Path:
    """The runner component (``.wasm``), built with componentize-py unless cached."""
    say = progress or (lambda _line: None)
    files = guest_files()
    path = cache_dir() / f"runner-{component_key(files)}.wasm"
    if path.exists():
        say(f"component cached: {path}")
        return path
    say(f"building the runner component with componentize-py {COMPONENTIZE_PY_VERSION}…")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dynwf-wasm-build-") as tmp:
        root = Path(tmp)
        for name, data in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        empty_venv = root / "no-site-packages"
        (empty_venv / "site-packages").mkdir(parents=True)
        out = root / "runner.wasm"
        command = [
            *_componentize_py(),
            "-d", str(root / "wit"),
            "-w", _WORLD,
            "componentize", _GUEST_APP,
            "-p", str(root),
            "-o", str(out),
        ]  # fmt: skip
        env = {"PATH": os.environ.get("PATH", ""), "HOME": tmp, "VIRTUAL_ENV": str(empty_venv)}
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, check=False)
        if done.returncode != 0 or not out.exists():
            output = (done.stderr or done.stdout).decode("utf-8", "replace")[-4000:]
            raise RunnerBuildError(f"componentize-py failed ({done.returncode}):\n{output}")
        _write_atomically(path, out.read_bytes())
    _prune("wasm", path)
    say(f"component built in {time.monotonic() - started:.1f} s: {path}")
    return path


def load_runner(engine: wasmtime.Engine, progress: Progress | None = None) -> component.Component:
    """The compiled runner for ``engine``: deserialized from the cache, else compiled and
    cached first. Builds the component when needed (slow: call it off the request path)."""
    say = progress or (lambda _line: None)
    source = build_component(progress)
    compiled = cache_dir() / f"runner-{compiled_key(source)}.cwasm"
    if compiled.exists():
        try:
            loaded = component.Component.deserialize_file(engine, str(compiled))
        except Exception as error:
            say(f"cached compiled runner unusable ({error}); recompiling")
            with contextlib.suppress(OSError):
                compiled.unlink()
        else:
            say(f"compiled runner cached: {compiled}")
            return loaded
    say(f"compiling the runner with wasmtime {WASMTIME_VERSION} (takes a while)…")
    started = time.monotonic()
    try:
        built = component.Component(engine, source.read_bytes())
        _write_atomically(compiled, bytes(built.serialize()))
        _prune("cwasm", compiled)
    except wasmtime.WasmtimeError as error:
        raise RunnerBuildError(f"wasmtime could not compile the runner: {error}") from error
    say(f"runner compiled in {time.monotonic() - started:.1f} s: {compiled}")
    return component.Component.deserialize_file(engine, str(compiled))


def build_runner(progress: Progress | None = None) -> Path:
    """Build and compile the runner into the cache (``dynwf wasm build``); returns the
    compiled artifact's path. Idempotent and cheap when everything is cached."""
    load_runner(new_engine(), progress)
    return cache_dir() / f"runner-{compiled_key(build_component())}.cwasm"
