"""Server settings: one frozen dataclass, filled by the CLI or by tests."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..sandbox import DEFAULT_LIMITS, IsolateLimits

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
TOKEN_ENV = "DYNWF_ADMIN_TOKEN"  # noqa: S105 (the variable name, not a secret)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8787
    store: str = "sqlite:///.dynwf/state.db"
    tenants_dir: Path | None = Path("tenants")
    """Every ``<dir>/<id>/index.py`` is a tenant, deployed at start-up and on change."""
    backend: str = "subprocess"
    admin_token: str | None = None
    """Bearer token for ``/admin/api``; falls back to ``$DYNWF_ADMIN_TOKEN``."""
    data_dir: Path | None = None
    """Versions of tenant code and the tenant index; default: beside the SQLite file."""
    poll_interval: float = 1.0
    """Seconds between scans of ``tenants_dir`` for changed files (0 turns polling off)."""
    max_body_bytes: int = 1 << 20
    max_code_bytes: int = 4 << 20
    heartbeat_seconds: float = 15.0
    max_isolates: int = 100
    idle_timeout: float = 300.0
    playground: bool = True
    limits: IsolateLimits = field(default=DEFAULT_LIMITS)
    """Every tenant's isolate limits (S40): memory, CPU and wall time per call."""

    def token(self) -> str | None:
        token = self.admin_token if self.admin_token is not None else os.environ.get(TOKEN_ENV)
        return token or None

    def resolved_data_dir(self) -> Path:
        if self.data_dir is not None:
            return self.data_dir
        parts = urlsplit(self.store)
        if parts.scheme == "sqlite":
            path = self.store[len("sqlite:///") :]
            if path and path != ":memory:":
                return Path(path).parent
        return Path(".dynwf")

    def safe_host(self) -> tuple[str, str | None]:
        """The host to bind and, if it had to change, why (no token: loopback only)."""
        if self.token() is None and self.host not in LOOPBACK_HOSTS:
            return "127.0.0.1", (
                f"no admin token configured (set {TOKEN_ENV} or --admin-token): "
                f"binding 127.0.0.1 instead of {self.host}"
            )
        return self.host, None
