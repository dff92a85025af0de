"""Tenant code on disk and the history of its versions.

A tenant is a folder ``<tenants_dir>/<id>/`` with an ``index.py`` (and more modules). The
registry notices changes by polling file signatures (path, mtime, size) and the index of
versions (``<data_dir>/tenants.json``) records, per tenant, every version deployed and which
one is current, so that API-deployed tenants come back after a restart. The code itself is
kept by the loader's content-addressed store (a version is a content hash).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
MAX_VERSIONS_KEPT = 50


class InvalidTenantError(ValueError):
    """A tenant id or its files are not acceptable."""


def check_tenant_id(tenant: str) -> str:
    if not TENANT_ID.match(tenant):
        raise InvalidTenantError(
            f"invalid tenant id {tenant!r}: 1-63 characters of a-z, 0-9, '-' and '_', "
            "starting with a letter or digit"
        )
    return tenant


@dataclass(frozen=True)
class VersionInfo:
    version: str
    created: float
    source: str
    """Where it came from: ``dir`` (the tenants folder), ``api`` or ``playground``."""
    modules: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "created": self.created,
            "source": self.source,
            "modules": list(self.modules),
        }


@dataclass
class TenantInfo:
    id: str
    current: str
    versions: list[VersionInfo]

    @property
    def source(self) -> str:
        for v in self.versions:
            if v.version == self.current:
                return v.source
        return "unknown"


def read_tenant_dir(folder: Path) -> dict[str, str]:
    """``*.py`` under a tenant folder, as dotted module file names (``pkg.mod.py``)."""
    modules: dict[str, str] = {}
    for file in sorted(folder.rglob("*.py")):
        relative = file.relative_to(folder)
        if any(part.startswith((".", "__pycache__")) for part in relative.parts):
            continue
        modules[".".join(relative.with_suffix("").parts) + ".py"] = file.read_text("utf-8")
    return modules


def _signature(folder: Path) -> tuple[tuple[str, int, int], ...]:
    sig = []
    for file in sorted(folder.rglob("*.py")):
        try:
            st = file.stat()
        except FileNotFoundError:
            continue
        sig.append((str(file), st.st_mtime_ns, st.st_size))
    return tuple(sig)


class TenantRegistry:
    """Which tenants exist, their current version and their history."""

    def __init__(self, data_dir: Path, tenants_dir: Path | None) -> None:
        self._index_path = data_dir / "tenants.json"
        self.tenants_dir = tenants_dir
        self._tenants: dict[str, TenantInfo] = {}
        self._signatures: dict[str, tuple[tuple[str, int, int], ...]] = {}
        self._load_index()

    def _load_index(self) -> None:
        if not self._index_path.exists():
            return
        data = json.loads(self._index_path.read_text("utf-8"))
        for tid, entry in data.get("tenants", {}).items():
            versions = [
                VersionInfo(v["version"], float(v["created"]), v["source"], tuple(v["modules"]))
                for v in entry["versions"]
            ]
            self._tenants[tid] = TenantInfo(tid, entry["current"], versions)

    def _save_index(self) -> None:
        self._index_path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "tenants": {
                t.id: {"current": t.current, "versions": [v.to_json() for v in t.versions]}
                for t in self._tenants.values()
            }
        }
        fd, tmp = tempfile.mkstemp(dir=self._index_path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out)
        os.replace(tmp, self._index_path)

    def get(self, tenant: str) -> TenantInfo | None:
        return self._tenants.get(tenant)

    def all(self) -> list[TenantInfo]:
        return sorted(self._tenants.values(), key=lambda t: t.id)

    def record(self, tenant: str, version: str, source: str, modules: Mapping[str, str]) -> bool:
        """Make ``version`` current; True if it is new for this tenant."""
        info = self._tenants.get(tenant)
        if info is not None and info.current == version:
            return False
        entry = VersionInfo(version, time.time(), source, tuple(sorted(modules)))
        if info is None:
            self._tenants[tenant] = TenantInfo(tenant, version, [entry])
        else:
            info.current = version
            info.versions = [v for v in info.versions if v.version != version]
            info.versions.insert(0, entry)
            del info.versions[MAX_VERSIONS_KEPT:]
        self._save_index()
        return True

    def forget(self, tenant: str) -> None:
        if self._tenants.pop(tenant, None) is not None:
            self._save_index()

    def changed_dirs(self) -> dict[str, dict[str, str]]:
        """Tenant folders whose files changed since the last call: id -> modules."""
        out: dict[str, dict[str, str]] = {}
        if self.tenants_dir is None or not self.tenants_dir.is_dir():
            return out
        for folder in sorted(self.tenants_dir.iterdir()):
            if not (folder / "index.py").is_file() or not TENANT_ID.match(folder.name):
                continue
            sig = _signature(folder)
            if self._signatures.get(folder.name) == sig:
                continue
            self._signatures[folder.name] = sig
            out[folder.name] = read_tenant_dir(folder)
        return out
