"""Tenant modules from sources received over the channel, in fresh module objects.

Each bundle gets a private importer: tenant modules see a ``__builtins__`` whose
``__import__`` answers their own names (``import util``, ``from .lib import x``) from the
bundle and hands every other name to the normal import system (the standard library, the
sdk). Nothing is read from a directory and nothing enters ``sys.modules`` or
``sys.meta_path``.

Why not a finder on ``sys.meta_path``: ``sys.modules`` is process-wide. In the in-process
backend several tenants share a process, so a global finder would let one tenant's
``index`` shadow another's (and the host's own modules); the private hook works the same in
every backend.
"""

from __future__ import annotations

import builtins
import importlib.util
import linecache
import re
from collections.abc import Mapping, Sequence
from importlib.abc import Loader
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

from ...sdk import WorkflowError

_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TenantModuleError(WorkflowError):
    """A bundle names a module badly, or a tenant module failed to import."""


def module_name(path: str) -> tuple[str, bool]:
    """``"lib/util.py"`` → ``("lib.util", False)``; ``"lib/__init__.py"`` → ``("lib", True)``."""
    if not path.endswith(".py"):
        raise TenantModuleError(f"tenant module {path!r} must end in .py")
    parts = path[:-3].split("/")
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    if not parts or not all(_SEGMENT.match(part) for part in parts):
        raise TenantModuleError(f"tenant module path {path!r} is not importable")
    return ".".join(parts), is_package


class TenantModules(Loader):
    """One bundle's modules, imported on first use, each once."""

    def __init__(self, sources: Mapping[str, str], *, label: str = "tenant") -> None:
        self._sources: dict[str, tuple[str, str, bool]] = {}
        for path, source in sources.items():
            name, is_package = module_name(path)
            self._sources[name] = (f"<{label}>/{path}", source, is_package)
        # Implicit namespace packages for folders without an __init__.py.
        for name in list(self._sources):
            parts = name.split(".")
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                self._sources.setdefault(parent, (f"<{label}>/{parent}", "", True))
        self._tops = {name.partition(".")[0] for name in self._sources}
        self.modules: dict[str, ModuleType] = {}
        self._builtins = dict(builtins.__dict__)
        self._builtins["__import__"] = self._import

    def owns(self, name: str) -> bool:
        return name in self._sources

    def load(self, name: str) -> ModuleType:
        """Import tenant module ``name`` (and its parents) once."""
        module = self.modules.get(name)
        if module is not None:
            return module
        if name not in self._sources:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        parent_name, _, child = name.rpartition(".")
        parent = self.load(parent_name) if parent_name else None
        filename, source, is_package = self._sources[name]
        spec = ModuleSpec(name, self, origin=filename, is_package=is_package)
        spec.has_location = False
        module = importlib.util.module_from_spec(spec)
        module.__file__ = filename
        module.__dict__["__builtins__"] = self._builtins
        self.modules[name] = module
        try:
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102
        except BaseException:
            del self.modules[name]
            raise
        if parent is not None:
            setattr(parent, child, module)
        return module

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:  # pragma: no cover - load() execs
        raise ImportError("tenant modules are executed by TenantModules.load")

    def _import(
        self,
        name: str,
        globals: Mapping[str, Any] | None = None,
        locals: Mapping[str, Any] | None = None,
        fromlist: Sequence[str] | None = (),
        level: int = 0,
    ) -> ModuleType:
        if level > 0:
            package = (globals or {}).get("__package__") or ""
            resolved = importlib.util.resolve_name("." * level + name, package)
        else:
            resolved = name
        if resolved.partition(".")[0] not in self._tops or resolved not in self._sources:
            if level > 0:
                raise ModuleNotFoundError(f"No module named {resolved!r}", name=resolved)
            return builtins.__import__(name, globals, locals, fromlist or (), level)
        module = self.load(resolved)
        if fromlist:
            for item in fromlist:
                child = f"{resolved}.{item}"
                if item != "*" and child in self._sources:
                    self.load(child)
            return module
        if level > 0:
            return module
        self.load(resolved)
        return self.modules[resolved.partition(".")[0]]
