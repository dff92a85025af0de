"""One real dispatcher per test module, served by uvicorn on a random 127.0.0.1 port."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from harness import TOKEN, Running, serve


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with serve(tmp_path_factory.mktemp("dynwf"), admin_token=TOKEN) as running:
        yield running


@pytest.fixture
def client(server: Running) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c
