"""The ASGI app: tenant traffic, the admin API, live streams, the dashboard and playground.

Routing: a request under ``/t/<tenant>/...`` or carrying ``x-tenant-id`` goes to that tenant's
``fetch`` in its isolate; ``/admin/api`` is the admin API (bearer token); ``/admin/`` and
``/admin/playground`` are static pages that talk to the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request as HTTPRequest
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, StreamingResponse
from starlette.responses import Response as HTTPResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from ..runtime import INSTANCE_STATUSES, InstanceHandle, InstanceStatus
from ..sdk import (
    InstanceNotFoundError,
    IsolateLimitError,
    Request,
    WorkflowError,
    encode_value,
)
from ._config import ServerConfig
from ._logs import LogRecord
from ._models import CreateBody, DeployBody, EventBody, PlaygroundBody, openapi_schemas
from ._platform import BINDING, Platform, UnknownTenantError
from ._tenants import TENANT_ID, InvalidTenantError

log = logging.getLogger("dynamic_workflows.server")
STATIC = Path(__file__).parent / "static"
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "upgrade", "content-length", "te"}
)
PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
TENANT_HEADERS = {
    # Tenants share the dispatcher's origin with the dashboard: a tenant's page runs as an
    # opaque origin, so its scripts can reach neither the dashboard's storage nor the API.
    "content-security-policy": "sandbox allow-scripts allow-forms allow-popups allow-modals",
    "x-content-type-options": "nosniff",
}
STATUSES = frozenset(INSTANCE_STATUSES)  # S29
M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message", ...}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def response(self) -> JSONResponse:
        body = {"error": {"code": self.code, "message": self.message, **self.extra}}
        return JSONResponse(body, status_code=self.status)


def _jsonable(value: Any) -> Any:
    try:
        return encode_value(value)
    except Exception:
        return repr(value)


async def read_body(request: HTTPRequest, limit: int) -> bytes:
    """The body, refused with 413 as soon as it grows beyond ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "bad_request", "invalid Content-Length")
        if int(declared) > limit:
            raise ApiError(413, "too_large", f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_body(request: HTTPRequest, model: type[M], limit: int) -> M:
    raw = await read_body(request, limit)
    if not raw.strip():
        raise ApiError(400, "bad_request", "a JSON body is required")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, "malformed_json", f"malformed JSON: {error}") from None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
            for e in error.errors(include_url=False, include_input=False)
        ]
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
        raise ApiError(422, "invalid_body", f"invalid body: {summary}", problems=problems) from None


def _status_dict(st: InstanceStatus) -> dict[str, Any]:
    data = asdict(st) if is_dataclass(st) else dict(st)
    return {k: _jsonable(v) for k, v in data.items()}


class AdminApi:
    """Handlers of ``/admin/api``; each returns JSON or raises :class:`ApiError`."""

    def __init__(self, platform: Platform, config: ServerConfig) -> None:
        self.p = platform
        self.config = config

    # -- helpers ----------------------------------------------------------------------------
    async def _handle(self, uid: str) -> InstanceHandle:
        try:
            return await self.p.engine.instance(uid)
        except InstanceNotFoundError:
            raise ApiError(404, "not_found", f"no instance with uid {uid!r}") from None

    async def _view(self, handle: InstanceHandle, steps: bool = True) -> dict[str, Any]:
        st = await handle.status()
        view = _status_dict(st)
        if not steps:
            view.pop("steps", None)
        tenant, version = await self.p.instance_tenant(handle)
        view.update(uid=handle.uid, tenant=tenant, version=version)
        return view

    def _tenant(self, tenant: str) -> None:
        try:
            self.p.tenant(tenant)
        except UnknownTenantError:
            raise ApiError(404, "not_found", f"unknown tenant {tenant!r}") from None

    # -- tenants ----------------------------------------------------------------------------
    async def list_tenants(self, request: HTTPRequest) -> JSONResponse:
        items = []
        for info in self.p.registry.all():
            if info.id.startswith("playground-") and request.query_params.get("all") != "1":
                continue
            items.append(
                {
                    "id": info.id,
                    "version": info.current,
                    "source": info.source,
                    "versions": len(info.versions),
                    "instances": await self.p.engine.count_instances(
                        workflow=BINDING, scope=self.p.scope(info.id)
                    ),
                }
            )
        return JSONResponse({"items": items})

    async def deploy(self, request: HTTPRequest) -> JSONResponse:
        tenant = request.path_params["tenant"]
        body = await parse_body(request, DeployBody, self.config.max_code_bytes)
        try:
            version, created = self.p.deploy(tenant, body.files, source="api")
        except InvalidTenantError as error:
            raise ApiError(400, "invalid_tenant", str(error)) from None
        except ValueError as error:
            raise ApiError(422, "invalid_code", str(error)) from None
        return JSONResponse(
            {"tenant": tenant, "version": version, "created": created},
            status_code=201 if created else 200,
        )

    async def versions(self, request: HTTPRequest) -> JSONResponse:
        tenant = request.path_params["tenant"]
        self._tenant(tenant)
        info = self.p.tenant(tenant)
        return JSONResponse(
            {
                "tenant": tenant,
                "current": info.current,
                "items": [v.to_json() for v in info.versions],
            }
        )

    async def version_files(self, request: HTTPRequest) -> JSONResponse:
        tenant, version = request.path_params["tenant"], request.path_params["version"]
        self._tenant(tenant)
        known = {v.version for v in self.p.tenant(tenant).versions}
        files = self.p.version_modules(tenant, version) if version in known else None
        if files is None:
            raise ApiError(404, "not_found", f"tenant {tenant!r} has no version {version!r}")
        return JSONResponse({"tenant": tenant, "version": version, "files": files})

    async def create(self, request: HTTPRequest) -> JSONResponse:
        tenant = request.path_params["tenant"]
        self._tenant(tenant)
        body = await parse_body(request, CreateBody, self.config.max_body_bytes)
        try:
            handle = await self.p.create_instance(tenant, body.params, body.id)
        except WorkflowError as error:
            raise ApiError(400, error.name, error.message) from None
        return JSONResponse({"uid": handle.uid, "id": handle.id, "tenant": tenant}, status_code=201)

    # -- instances --------------------------------------------------------------------------
    async def list_instances(self, request: HTTPRequest) -> JSONResponse:
        q = request.query_params
        tenant, status = q.get("tenant"), q.get("status")
        try:
            limit = min(max(int(q.get("limit", "50")), 1), 500)
            offset = max(int(q.get("offset", "0")), 0)
        except ValueError:
            raise ApiError(400, "bad_request", "limit and offset must be integers") from None
        if status is not None and status not in STATUSES:
            raise ApiError(400, "bad_request", f"unknown status {status!r}")
        scope = None
        if tenant is not None:
            self._tenant(tenant)
            scope = self.p.scope(tenant)
        filters: dict[str, Any] = {"workflow": BINDING, "scope": scope, "status": status}
        rows = await self.p.engine.list_instances(**filters, limit=limit, offset=offset)
        total = await self.p.engine.count_instances(**filters)
        items = []
        for st in rows:
            view = _status_dict(st)
            view.pop("steps", None)
            view["tenant"] = self.p.tenant_of_scope(view.get("scope"))
            items.append(view)
        return JSONResponse({"items": items, "total": total, "limit": limit, "offset": offset})

    async def instance(self, request: HTTPRequest) -> JSONResponse:
        return JSONResponse(await self._view(await self._handle(request.path_params["uid"])))

    async def history(self, request: HTTPRequest) -> JSONResponse:
        uid = request.path_params["uid"]
        await self._handle(uid)
        try:
            after = int(request.query_params.get("after", "0"))
        except ValueError:
            raise ApiError(400, "bad_request", "after must be an integer") from None
        records = await self.p.engine.history(uid, after_seq=after)
        return JSONResponse({"items": [_jsonable(r) for r in records]})

    async def action(self, request: HTTPRequest) -> JSONResponse:
        uid, action = request.path_params["uid"], request.path_params["action"]
        handle = await self._handle(uid)
        ops: dict[str, Callable[[], Awaitable[None]]] = {
            "pause": handle.pause,
            "resume": handle.resume,
            "terminate": handle.terminate,
            "restart": handle.restart,
        }
        op = ops.get(action)
        if op is None:
            raise ApiError(404, "not_found", f"unknown action {action!r}")
        try:
            await op()
        except WorkflowError as error:
            raise ApiError(409, error.name, error.message) from None
        return JSONResponse(await self._view(handle, steps=False))

    async def send_event(self, request: HTTPRequest) -> JSONResponse:
        handle = await self._handle(request.path_params["uid"])
        body = await parse_body(request, EventBody, self.config.max_body_bytes + 4096)
        try:
            await handle.send_event(type=body.type, payload=body.payload)
        except WorkflowError as error:
            raise ApiError(409, error.name, error.message) from None
        return JSONResponse({"uid": handle.uid, "sent": body.type}, status_code=202)

    async def delete(self, request: HTTPRequest) -> JSONResponse:
        handle = await self._handle(request.path_params["uid"])
        await handle.delete()
        return JSONResponse({"uid": handle.uid, "deleted": True})

    # -- playground -------------------------------------------------------------------------
    async def playground_run(self, request: HTTPRequest) -> JSONResponse:
        if not self.config.playground:
            raise ApiError(404, "not_found", "the playground is turned off")
        body = await parse_body(request, PlaygroundBody, self.config.max_code_bytes)
        files = {"index.py": body.code}
        tenant = self.p.playground_id(files)
        try:
            compile(body.code, "index.py", "exec", dont_inherit=True)
        except SyntaxError as error:
            raise ApiError(
                422, "syntax_error", f"index.py line {error.lineno}: {error.msg}"
            ) from None
        version, _ = self.p.deploy(tenant, files, source="playground")
        try:
            handle = await self.p.create_instance(tenant, body.payload)
        except WorkflowError as error:
            raise ApiError(400, error.name, error.message) from None
        return JSONResponse(
            {"tenant": tenant, "version": version, "uid": handle.uid, "id": handle.id},
            status_code=201,
        )

    # -- live -------------------------------------------------------------------------------
    async def tenant_logs(self, request: HTTPRequest) -> StreamingResponse:
        tenant = request.path_params["tenant"]
        self._tenant(tenant)
        return self._log_stream(tenant, None)

    async def instance_logs(self, request: HTTPRequest) -> StreamingResponse:
        handle = await self._handle(request.path_params["uid"])
        tenant, _ = await self.p.instance_tenant(handle)
        return self._log_stream(tenant or "", handle.id)

    def _log_stream(self, tenant: str, instance_id: str | None) -> StreamingResponse:
        hub, beat, closing = self.p.logs, self.config.heartbeat_seconds, self.p.closing

        async def events() -> AsyncIterator[str]:
            async with hub.subscribe(tenant, instance_id) as sub:
                for rec in sub.replay:
                    yield _sse("log", rec, rec["seq"])
                last = sub.replay[-1]["seq"] if sub.replay else 0
                yield ": live\n\n"
                while True:
                    rec = await _next(sub.queue, beat, closing)
                    if rec is None:
                        return
                    if rec is HEARTBEAT:
                        yield ": heartbeat\n\n"
                        continue
                    assert isinstance(rec, dict)
                    if rec["seq"] > last:
                        last = rec["seq"]
                        yield _sse("log", rec, rec["seq"])

        return _sse_response(events())

    async def watch(self, request: HTTPRequest) -> StreamingResponse:
        uid = request.query_params.get("uid")
        tenant = request.query_params.get("tenant")
        if uid is not None:
            await self._handle(uid)
        scope = None
        if tenant is not None:
            self._tenant(tenant)
            scope = self.p.scope(tenant)
        engine, beat, p = self.p.engine, self.config.heartbeat_seconds, self.p
        closing = self.p.closing

        async def events() -> AsyncIterator[str]:
            queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(1000)

            async def pump() -> None:
                async for record in engine.watch(uid):
                    if scope is not None and record.get("scope") != scope:
                        continue
                    with contextlib.suppress(asyncio.QueueFull):
                        queue.put_nowait(record)

            task = asyncio.create_task(pump())
            try:
                yield ": live\n\n"
                while True:
                    record = await _next(queue, beat, closing)
                    if record is None:
                        return
                    if record is HEARTBEAT:
                        if task.done():
                            return
                        yield ": heartbeat\n\n"
                        continue
                    assert isinstance(record, dict)
                    data = {k: _jsonable(v) for k, v in record.items()}
                    data["tenant"] = p.tenant_of_scope(record.get("scope"))
                    yield _sse("instance", data, record.get("seq"))
            finally:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

        return _sse_response(events())

    async def info(self, request: HTTPRequest) -> JSONResponse:
        return JSONResponse(
            {
                "backend": self.config.backend,
                "store": self.config.store.split("?")[0],
                "tenants_dir": str(self.config.tenants_dir) if self.config.tenants_dir else None,
                "auth": self.config.token() is not None,
                "isolates": [_jsonable(i) for i in self.p.loader.isolates()],
            }
        )

    async def rescan(self, request: HTTPRequest) -> JSONResponse:
        deployed = self.p.sync_tenants_dir()
        return JSONResponse({"deployed": [{"tenant": t, "version": v} for t, v in deployed]})

    async def openapi(self, request: HTTPRequest) -> JSONResponse:
        return JSONResponse(openapi_document())


HEARTBEAT = object()
"""What :func:`_next` returns when ``beat`` seconds passed without an item."""


async def _next(queue: asyncio.Queue[Any], beat: float, closing: asyncio.Event) -> Any:
    """The next item, ``HEARTBEAT`` after ``beat`` idle seconds, or None when closing."""
    if closing.is_set():
        return None
    getter = asyncio.ensure_future(queue.get())
    stopper = asyncio.ensure_future(closing.wait())
    try:
        done, _ = await asyncio.wait({getter, stopper}, timeout=beat, return_when="FIRST_COMPLETED")
    finally:
        stopper.cancel()
        if not getter.done():
            getter.cancel()
    if getter in done:
        return getter.result()
    return None if stopper in done else HEARTBEAT


def _sse(event: str, data: Mapping[str, Any] | LogRecord, seq: Any = None) -> str:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _sse_response(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


ROUTES: list[tuple[str, str, str, str, str | None]] = [
    # (method, path, handler, summary, request body schema)
    ("GET", "/info", "info", "Server info: backend, store, live isolates", None),
    ("GET", "/tenants", "list_tenants", "List tenants with their current version", None),
    ("POST", "/tenants/rescan", "rescan", "Deploy changed tenant folders now", None),
    ("PUT", "/tenants/{tenant}", "deploy", "Deploy new code (a new version)", "DeployBody"),
    ("GET", "/tenants/{tenant}/versions", "versions", "List a tenant's versions", None),
    ("GET", "/tenants/{tenant}/versions/{version}", "version_files", "A version's files", None),
    ("POST", "/tenants/{tenant}/instances", "create", "Create an instance", "CreateBody"),
    ("GET", "/tenants/{tenant}/logs", "tenant_logs", "Live tenant logs (SSE)", None),
    ("GET", "/instances", "list_instances", "List instances (tenant, status, paging)", None),
    ("GET", "/instances/{uid}", "instance", "Instance status with its step timeline", None),
    ("DELETE", "/instances/{uid}", "delete", "Delete an instance and its records", None),
    ("GET", "/instances/{uid}/history", "history", "The instance's event log", None),
    ("GET", "/instances/{uid}/logs", "instance_logs", "Live instance logs (SSE)", None),
    ("POST", "/instances/{uid}/events", "send_event", "Send an event", "EventBody"),
    ("POST", "/instances/{uid}/{action}", "action", "pause | resume | terminate | restart", None),
    ("GET", "/watch", "watch", "Live instance updates (SSE; ?uid= or ?tenant=)", None),
    ("POST", "/playground/runs", "playground_run", "Run playground code", "PlaygroundBody"),
    ("GET", "/openapi.json", "openapi", "This document", None),
]


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for method, path, _handler, summary, body in ROUTES:
        op: dict[str, Any] = {
            "summary": summary,
            "responses": {"200": {"description": "OK"}, "4XX": {"description": "Error"}},
            "security": [{"bearer": []}],
        }
        params = [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]
        if params:
            op["parameters"] = [
                {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                for n in params
            ]
        if body:
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}
                },
            }
        paths.setdefault("/admin/api" + path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "dynamic-workflows admin API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": openapi_schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def _cross_site(request: HTTPRequest) -> str | None:
    """Refuse requests a browser sent from another origin (another site, a tenant's
    sandboxed page, a DNS-rebinding name): their ``Origin`` is not this server's."""
    origin = request.headers.get("origin")
    if origin is None:
        return None  # not a browser's cross-origin request (curl, the CLI, same-origin GET)
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin != own:
        return f"cross-origin request from {origin!r} refused"
    return None


class AdminAuth:
    """Bearer token in constant time; with no token configured, loopback clients only."""

    def __init__(self, app: ASGIApp, config: ServerConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = self.config.token()
        request = HTTPRequest(scope)
        if request.url.path.endswith("/openapi.json"):
            await self.app(scope, receive, send)
            return
        refusal = _cross_site(request)
        if refusal is not None:
            await ApiError(403, "forbidden", refusal).response()(scope, receive, send)
            return
        if token is None:
            client = request.client.host if request.client else ""
            host = request.url.hostname or ""
            if client not in LOOPBACK or host not in LOOPBACK:
                error = ApiError(
                    403, "forbidden", "no admin token configured: loopback clients and hosts only"
                )
                await error.response()(scope, receive, send)
                return
        else:
            header = request.headers.get("authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), token.encode()
            ):
                error = ApiError(401, "unauthorized", "a valid bearer token is required")
                response = error.response()
                response.headers["www-authenticate"] = 'Bearer realm="dynwf"'
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class TenantRouter:
    """Sends ``/t/<tenant>/...`` and ``x-tenant-id`` requests to the tenant's ``fetch``."""

    def __init__(self, app: ASGIApp, platform: Platform, config: ServerConfig) -> None:
        self.app = app
        self.platform = platform
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        tenant: str | None = None
        if path.startswith("/t/"):
            tenant, _, rest = path[3:].partition("/")
            path = "/" + rest
        elif not path.startswith("/admin"):
            for name, value in scope["headers"]:
                if name == b"x-tenant-id":
                    tenant = value.decode("latin-1")
                    break
        if tenant is None:
            await self.app(scope, receive, send)
            return
        response = await self.handle(HTTPRequest(scope, receive), tenant, path)
        await response(scope, receive, send)

    async def handle(self, request: HTTPRequest, tenant: str, path: str) -> HTTPResponse:
        try:
            if not TENANT_ID.match(tenant) or self.platform.registry.get(tenant) is None:
                raise ApiError(404, "unknown_tenant", f"unknown tenant {tenant!r}")
            body = await read_body(request, self.config.max_body_bytes)
            query = request.url.query
            url = f"{request.url.scheme}://{request.url.netloc}{path}" + (
                f"?{query}" if query else ""
            )
            headers = {k: v for k, v in request.headers.items() if k not in HOP_BY_HOP}
            reply = await self.platform.fetch(
                tenant, Request(method=request.method, url=url, headers=headers, body=body)
            )
        except ApiError as error:
            return error.response()
        except UnknownTenantError:
            return ApiError(404, "unknown_tenant", f"unknown tenant {tenant!r}").response()
        except IsolateLimitError as error:
            return ApiError(
                503,
                "limit_exceeded",
                f"tenant {tenant!r} is over its {error.limit} limit",
                limit=error.limit,
            ).response()
        except Exception as error:
            name = getattr(error, "name", type(error).__name__)
            return ApiError(
                500,
                "tenant_error",
                f"tenant {tenant!r} failed to handle the request ({name}); "
                "see the tenant's log stream",
            ).response()
        status = reply.status if 100 <= reply.status <= 599 else 502
        out_headers = {
            k: v for k, v in reply.headers.items() if k.lower() not in HOP_BY_HOP and "\n" not in v
        }
        response = HTTPResponse(reply.body_bytes(), status_code=status, headers=out_headers)
        for name, value in TENANT_HEADERS.items():
            response.headers.append(name, value)
        return response


def create_app(platform: Platform, config: ServerConfig, *, manage: bool = True) -> ASGIApp:
    """The ASGI app. With ``manage`` the app's lifespan enters and leaves the platform."""
    api = AdminApi(platform, config)

    async def api_errors(request: HTTPRequest, exc: Exception) -> HTTPResponse:
        if isinstance(exc, ApiError):
            return exc.response()
        log.exception("admin API error", exc_info=exc)
        return ApiError(500, "internal", f"{type(exc).__name__}: {exc}").response()

    api_app = Starlette(
        routes=[
            Route(path, getattr(api, handler), methods=[method])
            for method, path, handler, _summary, _body in ROUTES
        ],
        exception_handlers={Exception: api_errors, ApiError: api_errors},
    )

    async def not_found(request: HTTPRequest, exc: Exception) -> HTTPResponse:
        return ApiError(404, "not_found", f"no route for {request.url.path}").response()

    def page(name: str) -> Callable[[HTTPRequest], Awaitable[HTTPResponse]]:
        async def serve(request: HTTPRequest) -> HTTPResponse:
            return FileResponse(
                STATIC / name, headers={"cache-control": "no-cache", **PAGE_HEADERS}
            )

        return serve

    async def root(request: HTTPRequest) -> HTTPResponse:
        return RedirectResponse("/admin/")

    async def health(request: HTTPRequest) -> HTTPResponse:
        return JSONResponse({"ok": True})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage:
            async with platform:
                yield
        else:
            yield

    app = Starlette(
        routes=[
            Route("/", root),
            Route("/healthz", health),
            Route("/admin", root),
            Route("/admin/", page("dashboard.html")),
            Route("/admin/playground", page("playground.html")),
            Mount("/admin/static", StaticFiles(directory=STATIC)),
            Mount("/admin/api", AdminAuth(api_app, config)),
        ],
        exception_handlers={404: not_found},
        lifespan=lifespan,
    )
    return TenantRouter(app, platform, config)
