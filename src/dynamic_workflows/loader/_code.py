"""``WorkerCode``: one version of a tenant's code, and the content-addressed store of versions.

A version is the sha256 of the code itself (modules, main module, classes shipped by value),
so the same code always has the same version and an instance can be pinned to it (S39). Every
version the loader has loaded is kept on disk under ``code_dir`` as plain JSON, so a pinned
instance finds its code again after eviction or a dispatcher restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..sandbox import DEFAULT_LIMITS, BackendName, CodeBundle, IsolateLimits

MAX_MODULES = 256
MAX_CODE_BYTES = 8 << 20
_VERSION_CHARS = frozenset("0123456789abcdef")


class InvalidWorkerCodeError(ValueError):
    """The code cannot be loaded as given (bad module names, too large, network asked for)."""


@dataclass(frozen=True)
class WorkerCode:
    """What a tenant runs: sources delivered to its isolate over the channel.

    ``global_outbound`` must be ``None``: isolates have no network at all.
    """

    main_module: str
    modules: Mapping[str, str]
    env: Mapping[str, Any] = field(default_factory=dict)
    global_outbound: None = None
    limits: IsolateLimits = DEFAULT_LIMITS
    backend: BackendName | None = None
    pickled_entrypoints: Mapping[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.global_outbound is not None:
            raise InvalidWorkerCodeError(
                "global_outbound must be None: isolates have no network access"
            )
        if self.main_module not in self.modules and not self.pickled_entrypoints:
            raise InvalidWorkerCodeError(
                f"main_module {self.main_module!r} is not among the modules "
                f"({', '.join(sorted(self.modules)) or 'none'})"
            )
        if len(self.modules) > MAX_MODULES:
            raise InvalidWorkerCodeError(f"at most {MAX_MODULES} modules per worker")
        total = 0
        for name, source in self.modules.items():
            if not _valid_module_file(name) or not isinstance(source, str):
                raise InvalidWorkerCodeError(
                    f"module {name!r}: names are dotted identifiers ending in .py, sources str"
                )
            total += len(source.encode("utf-8"))
        total += sum(len(b) for b in self.pickled_entrypoints.values())
        if total > MAX_CODE_BYTES:
            raise InvalidWorkerCodeError(f"worker code is larger than {MAX_CODE_BYTES} bytes")

    @property
    def version(self) -> str:
        """Content hash of the code (not of env or limits): the pinning key (S39)."""
        digest = hashlib.sha256()
        digest.update(self.main_module.encode())
        for name in sorted(self.modules):
            digest.update(b"\0m" + name.encode() + b"\0" + self.modules[name].encode())
        for name in sorted(self.pickled_entrypoints):
            digest.update(b"\0p" + name.encode() + b"\0" + self.pickled_entrypoints[name])
        return digest.hexdigest()[:32]

    def bundle(self, env: Mapping[str, Any]) -> CodeBundle:
        return CodeBundle(
            main_module=self.main_module,
            modules=dict(self.modules),
            version=self.version,
            env=dict(env),
            limits=self.limits,
            pickled_entrypoints=dict(self.pickled_entrypoints),
        )

    def with_env(self, env: Mapping[str, Any]) -> WorkerCode:
        return replace(self, env=dict(env))

    @classmethod
    def from_entrypoint(
        cls,
        entrypoint: type,
        *,
        name: str | None = None,
        env: Mapping[str, Any] | None = None,
        limits: IsolateLimits = DEFAULT_LIMITS,
        backend: BackendName | None = None,
    ) -> WorkerCode:
        """Ship a class defined in host code (a test, a notebook) by value with cloudpickle.

        Pickles travel host to isolate only; nothing pickled ever comes back.
        """
        import cloudpickle

        # the class's own module goes by value too (the isolate cannot import test or
        # notebook modules); the module object is already loaded, nothing is imported here
        module = sys.modules.get(getattr(entrypoint, "__module__", "") or "")
        by_value = module is not None and module.__name__ != "__main__"
        if by_value:
            cloudpickle.register_pickle_by_value(module)
        try:
            data = cloudpickle.dumps(entrypoint)
        finally:
            if by_value:
                cloudpickle.unregister_pickle_by_value(module)
        entry_name = name or entrypoint.__name__
        return cls(
            main_module="",
            modules={},
            env=dict(env or {}),
            limits=limits,
            backend=backend,
            pickled_entrypoints={entry_name: data},
        )

    @classmethod
    def from_directory(
        cls,
        path: str | os.PathLike[str],
        *,
        env: Mapping[str, Any] | None = None,
        main_module: str = "index.py",
        limits: IsolateLimits = DEFAULT_LIMITS,
        backend: BackendName | None = None,
    ) -> WorkerCode:
        """Every ``*.py`` below a tenant folder (packages as dotted names); main ``index.py``."""
        root = Path(path)
        modules: dict[str, str] = {}
        for file in sorted(root.rglob("*.py")):
            relative = file.relative_to(root)
            if any(part.startswith((".", "__pycache__")) for part in relative.parts):
                continue
            modules[".".join(relative.with_suffix("").parts) + ".py"] = file.read_text("utf-8")
        return cls(main_module, modules, env=dict(env or {}), limits=limits, backend=backend)


def _valid_module_file(name: object) -> bool:
    if not isinstance(name, str) or not name.endswith(".py"):
        return False
    parts = name[:-3].split(".")
    return all(part.isidentifier() for part in parts)


class CodeStore:
    """Content-addressed versions on disk: ``<dir>/<version>.json``, written atomically."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def _path(self, version: str) -> Path:
        if not version or not set(version) <= _VERSION_CHARS:
            raise InvalidWorkerCodeError(f"invalid code version {version!r}")
        return self.directory / f"{version}.json"

    def save(self, code: WorkerCode) -> str:
        version = code.version
        path = self._path(version)
        if path.exists():
            return version
        self.directory.mkdir(parents=True, exist_ok=True)
        record = {
            "main_module": code.main_module,
            "modules": dict(code.modules),
            "pickled_entrypoints": {k: v.hex() for k, v in code.pickled_entrypoints.items()},
        }
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(record, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        return version

    def load(self, version: str, template: WorkerCode | None = None) -> WorkerCode | None:
        """That version's code, with env/limits/backend taken from ``template`` (the current
        deployment), or None if this store never saw it."""
        path = self._path(version)
        if not path.exists():
            return None
        record = json.loads(path.read_text("utf-8"))
        code = WorkerCode(
            main_module=record["main_module"],
            modules=record["modules"],
            pickled_entrypoints={
                k: bytes.fromhex(v) for k, v in record.get("pickled_entrypoints", {}).items()
            },
        )
        if template is not None:
            code = replace(code, env=template.env, limits=template.limits, backend=template.backend)
        return code
