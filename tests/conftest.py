"""Shared test configuration: every async test runs on asyncio."""

from pathlib import Path

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def wasm_runner() -> Path:
    """The wasm runner component, built once (cached on disk across runs; a fresh machine
    builds it here, in the test set-up)."""
    from dynamic_workflows.sandbox._wasm import build_runner

    return build_runner()
