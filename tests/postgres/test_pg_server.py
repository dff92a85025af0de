"""The test server helper: a missing PostgreSQL fails with a message that says what to do
(the suite never skips), and the cluster is really gone after ``stop``."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from . import _server


def test_missing_binaries_fail_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(_server, "BIN", tmp_path / "nowhere")
    with pytest.raises(_server.ServerError, match=r"system-deps\.sh.*DYNWF_PG_BIN"):
        _server.start()


def test_a_cluster_starts_and_is_removed(pg_server: _server.Server) -> None:
    server = _server.start(fsync=False)
    try:
        assert server.port != pg_server.port
        with psycopg.connect(server.url()) as conn:
            version = conn.execute("SHOW server_version_num").fetchone()
            assert version is not None and version[0].startswith("15")
            assert conn.execute("SHOW fsync").fetchone() == ("off",)
    finally:
        _server.stop(server)
    assert not server.root.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.url(), connect_timeout=5)
