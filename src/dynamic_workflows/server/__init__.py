"""The dispatcher product: the ASGI app (tenant traffic, admin API, dashboard, playground).

It may import any public name of the other packages; nothing imports it but the CLI.
"""

from __future__ import annotations

import logging
from types import FrameType

from ._app import create_app, openapi_document
from ._config import TOKEN_ENV, ServerConfig
from ._logs import LogHub, LogRecord
from ._platform import Platform, UnknownTenantError
from ._tenants import InvalidTenantError, TenantRegistry, check_tenant_id

log = logging.getLogger("dynamic_workflows.server")


def serve(config: ServerConfig) -> None:
    """Run the dispatcher with uvicorn until interrupted (no token: loopback only)."""
    import uvicorn

    host, warning = config.safe_host()
    if warning:
        log.warning(warning)
    elif config.token() is None:
        log.warning("no admin token configured: the admin API answers loopback clients only")
    platform = Platform(config)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            platform.closing.set()  # live streams end, so connections can close
            super().handle_exit(sig, frame)

    uvicorn_config = uvicorn.Config(
        create_app(platform, config),
        host=host,
        port=config.port,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    Server(uvicorn_config).run()


__all__ = [
    "TOKEN_ENV",
    "InvalidTenantError",
    "LogHub",
    "LogRecord",
    "Platform",
    "ServerConfig",
    "TenantRegistry",
    "UnknownTenantError",
    "check_tenant_id",
    "create_app",
    "openapi_document",
    "serve",
]
