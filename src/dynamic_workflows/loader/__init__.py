"""The Worker Loader: per-tenant isolates loaded on demand, cached by id, code versions kept.

May import sdk, rpc, sandbox and runtime's public names; never dispatch, server or cli.
"""

from ._code import CodeStore, InvalidWorkerCodeError, WorkerCode
from ._loader import (
    BindContext,
    CodeFactory,
    EntrypointStub,
    WorkerBindable,
    WorkerLoader,
    WorkerStub,
)

__all__ = [
    "BindContext",
    "CodeFactory",
    "CodeStore",
    "EntrypointStub",
    "InvalidWorkerCodeError",
    "WorkerBindable",
    "WorkerCode",
    "WorkerLoader",
    "WorkerStub",
]
