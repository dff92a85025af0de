"""The dispatcher: one engine, one loader, every tenant's code, and their logs.

This is the README pattern made concrete: ``WORKFLOWS`` is registered once with a dynamic
entrypoint that loads the instance's tenant (on its pinned version) and forwards ``run``
into that tenant's isolate; a tenant's ``fetch`` gets a binding wrapped with its metadata.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import traceback
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any

import anyio

from ..dispatch import (
    LoadRunnerContext,
    create_dynamic_workflow_entrypoint,
    scope_of,
    wrap_workflow_binding,
)
from ..loader import EntrypointStub, WorkerCode, WorkerLoader, WorkerStub
from ..runtime import InstanceHandle, Workflows
from ..sdk import Request, Response
from ._config import ServerConfig
from ._logs import LogHub
from ._tenants import TenantInfo, TenantRegistry, check_tenant_id

log = logging.getLogger("dynamic_workflows.server")

BINDING = "WORKFLOWS"
PLAYGROUND_PREFIX = "playground-"


class UnknownTenantError(LookupError):
    def __init__(self, tenant: str) -> None:
        super().__init__(f"unknown tenant {tenant!r}")
        self.tenant = tenant


def tenant_metadata(tenant: str) -> dict[str, str]:
    return {"tenantId": tenant}


class Platform:
    """Owns the engine and the loader for the server and the CLI's ``run``."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        data_dir = config.resolved_data_dir()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.logs = LogHub()
        self.registry = TenantRegistry(data_dir, config.tenants_dir)
        self.engine = Workflows(store=config.store)
        self.engine.register(BINDING, create_dynamic_workflow_entrypoint(self._load_runner), env={})
        self.loader = WorkerLoader(
            backend=config.backend,  # type: ignore[arg-type]
            env={BINDING: self.engine.binding(BINDING)},
            max_isolates=config.max_isolates,
            idle_timeout=config.idle_timeout,
            code_dir=data_dir / "code",
        )
        self.loader.on_log(self.logs.publish)
        self._scopes: dict[str, str] = {}
        self._stack: AsyncExitStack | None = None
        self.closing = asyncio.Event()
        """Set when the server starts to shut down: live streams end so it can."""

    # -- lifecycle --------------------------------------------------------------------------
    async def __aenter__(self) -> Platform:
        async with AsyncExitStack() as stack:
            # The loader outlives the engine: on the way out the engine stops its runs
            # first, so none is replayed into a closed loader.
            await stack.enter_async_context(self.loader)
            await stack.enter_async_context(self.engine)
            for info in self.registry.all():
                self._scopes[scope_of(tenant_metadata(info.id))] = info.id
            self.sync_tenants_dir()
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)
            if self.config.poll_interval > 0 and self.config.tenants_dir is not None:
                tg.start_soon(self._poll_tenants)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    async def _poll_tenants(self) -> None:
        while True:
            await anyio.sleep(self.config.poll_interval)
            try:
                self.sync_tenants_dir()
            except Exception:
                log.exception("scanning %s failed", self.config.tenants_dir)

    # -- tenants ----------------------------------------------------------------------------
    def sync_tenants_dir(self) -> list[tuple[str, str]]:
        """Deploy every tenant folder whose files changed; returns (tenant, version)."""
        deployed = []
        for tenant, modules in self.registry.changed_dirs().items():
            try:
                version, created = self.deploy(tenant, modules, source="dir")
            except Exception as error:
                log.error("tenant %s: not deployed: %s", tenant, error)
                self.logs.publish(
                    {"tenant": tenant, "stream": "stderr", "line": f"deploy failed: {error}"}
                )
                continue
            if created:
                log.info("tenant %s: deployed version %s", tenant, version[:12])
            deployed.append((tenant, version))
        return deployed

    def _code(self, tenant: str, modules: Mapping[str, str]) -> WorkerCode:
        return WorkerCode(
            main_module="index.py",
            modules=dict(modules),
            env={BINDING: wrap_workflow_binding(tenant_metadata(tenant))},
            global_outbound=None,
            limits=self.config.limits,
        )

    def deploy(self, tenant: str, modules: Mapping[str, str], source: str) -> tuple[str, bool]:
        """Make ``modules`` the tenant's current code; (version, whether it is new)."""
        check_tenant_id(tenant)
        code = self._code(tenant, modules)
        self.loader.code_store.save(code)
        info = self.registry.get(tenant)
        if info is not None and info.current == code.version:
            return code.version, False
        self.loader.deploy(tenant, code)
        self.registry.record(tenant, code.version, source, code.modules)
        self._scopes[scope_of(tenant_metadata(tenant))] = tenant
        return code.version, True

    def tenant(self, tenant: str) -> TenantInfo:
        info = self.registry.get(tenant)
        if info is None:
            raise UnknownTenantError(tenant)
        return info

    def version_modules(self, tenant: str, version: str) -> dict[str, str] | None:
        self.tenant(tenant)
        code = self.loader.code_store.load(version)
        return None if code is None else dict(code.modules)

    def stub(self, tenant: str) -> WorkerStub:
        info = self.tenant(tenant)
        return self.loader.get(tenant, lambda: self._current_code(tenant, info.current))

    def _current_code(self, tenant: str, version: str) -> WorkerCode:
        stored = self.loader.code_store.load(version)
        if stored is None:
            raise UnknownTenantError(tenant)
        return self._code(tenant, stored.modules)

    def _load_runner(self, ctx: LoadRunnerContext) -> EntrypointStub:
        tenant = str(ctx.metadata.get("tenantId", ""))
        return self.stub(tenant).get_entrypoint("TenantWorkflow")

    def scope(self, tenant: str) -> str:
        return scope_of(tenant_metadata(tenant))

    def tenant_of_scope(self, scope: str | None) -> str | None:
        return self._scopes.get(scope or "")

    @staticmethod
    def playground_id(modules: Mapping[str, str]) -> str:
        digest = hashlib.sha256()
        for name in sorted(modules):
            digest.update(name.encode() + b"\0" + modules[name].encode() + b"\0")
        return PLAYGROUND_PREFIX + digest.hexdigest()[:12]

    # -- traffic ----------------------------------------------------------------------------
    async def fetch(self, tenant: str, request: Request) -> Response:
        """The tenant's ``fetch(request, env)`` in its isolate. Errors propagate; the
        traceback, if any, goes to the dispatcher's log and the tenant's log stream."""
        stub = self.stub(tenant)
        try:
            return await stub.get_entrypoint().fetch(request)
        except Exception as error:
            self.report_tenant_error(tenant, error)
            raise

    def report_tenant_error(self, tenant: str, error: BaseException) -> None:
        detail = getattr(error, "traceback", None) or "".join(
            traceback.format_exception_only(type(error), error)
        )
        log.error("tenant %s: fetch failed: %s", tenant, str(detail).rstrip())
        for line in str(detail).rstrip().splitlines():
            self.logs.publish({"tenant": tenant, "stream": "stderr", "line": line})

    async def create_instance(
        self, tenant: str, params: Any = None, instance_id: str | None = None
    ) -> InstanceHandle:
        """Create an instance for ``tenant`` exactly as its wrapped binding would (S37-S39)."""
        stub = self.stub(tenant)
        code = await stub.code()
        metadata = tenant_metadata(tenant)
        scoped = self.engine.binding(BINDING).scoped(
            scope_of(metadata), {"metadata": metadata, "version": code.version}
        )
        return await scoped.create(id=instance_id, params=params)

    async def instance_tenant(self, handle: InstanceHandle) -> tuple[str | None, str | None]:
        envelope = await handle.envelope()
        if not isinstance(envelope, Mapping):
            return None, None
        metadata = envelope.get("metadata")
        tenant = metadata.get("tenantId") if isinstance(metadata, Mapping) else None
        version = envelope.get("version")
        return (
            str(tenant) if tenant is not None else None,
            str(version) if version is not None else None,
        )
