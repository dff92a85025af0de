"""``open_backend(name)``: pick an isolate backend, importing its module only when chosen.

``inprocess`` (``_inprocess``, no confinement), ``subprocess`` (``_subprocess``, the confined
zygote children, with this package's ``ChannelIsolate`` on top) and ``wasm`` (``_wasm``).
"""

from __future__ import annotations

from typing import Any, Protocol, cast

from ..rpc import MAX_DEPTH, MAX_FRAME, Exposures
from ._channel import STEP_GRACE, ChannelIsolate
from ._isolate import BackendName, Isolate
from ._limits import DEFAULT_LIMITS, IsolateLimits

_CHANNEL_OPTIONS = ("exposures", "step_grace", "max_frame", "max_depth")


class IsolateBackend(Protocol):
    """Makes isolates of one kind."""

    @property
    def name(self) -> str: ...

    async def new_isolate(self, limits: IsolateLimits = DEFAULT_LIMITS) -> Isolate: ...

    def confinement_report(self) -> dict[str, Any]:
        """What confinement this backend applies (probed at start)."""
        ...

    async def aclose(self) -> None: ...


class ConfinedSubprocessBackend:
    """Isolates in confined children spawned by ``_subprocess.SubprocessBackend``."""

    name = "subprocess"

    def __init__(
        self,
        spawner: Any,
        *,
        exposures: Exposures | None = None,
        step_grace: float = STEP_GRACE,
        max_frame: int = MAX_FRAME,
        max_depth: int = MAX_DEPTH,
    ) -> None:
        self.spawner = spawner
        self.exposures = dict(exposures or {})
        self.step_grace = step_grace
        self.max_frame = max_frame
        self.max_depth = max_depth
        self._isolates: list[ChannelIsolate] = []

    async def new_isolate(self, limits: IsolateLimits = DEFAULT_LIMITS) -> ChannelIsolate:
        child = await self.spawner.spawn(limits)
        try:
            isolate = await ChannelIsolate.connect(
                child.sock,
                limits,
                backend="subprocess",
                process=child,
                confinement=child.confinement,
                exposures=self.exposures,
                step_grace=self.step_grace,
                max_frame=self.max_frame,
                max_depth=self.max_depth,
            )
        except BaseException:
            await child.kill(None)
            raise
        self._isolates = [i for i in self._isolates if i.alive]
        self._isolates.append(isolate)
        return isolate

    def confinement_report(self) -> dict[str, Any]:
        report: dict[str, Any] = self.spawner.confinement_report()
        return report

    async def aclose(self) -> None:
        for isolate in self._isolates:
            await isolate.close()
        self._isolates.clear()
        await self.spawner.aclose()


async def open_backend(name: BackendName, **options: Any) -> IsolateBackend:
    """The backend called ``name``; ``options`` go to its constructor.

    For ``inprocess`` and ``subprocess``, ``exposures`` (type → ``rpc.Exposure``),
    ``step_grace``, ``max_frame`` and ``max_depth`` configure the channel; the subprocess
    backend's other options (``pool_size``, ``allow_missing``, ...) go to
    ``SubprocessBackend``.
    """
    if name == "inprocess":
        from ._inprocess import InProcessBackend

        return InProcessBackend(**options)
    if name == "subprocess":
        from ._subprocess import SubprocessBackend

        channel = {key: options.pop(key) for key in _CHANNEL_OPTIONS if key in options}
        spawner = SubprocessBackend(**options)
        if hasattr(spawner, "new_isolate"):
            return cast(IsolateBackend, spawner)
        if hasattr(spawner, "start"):
            await spawner.start()
        return ConfinedSubprocessBackend(spawner, **channel)
    if name == "wasm":
        from ._wasm import open_wasm_backend

        wasm: IsolateBackend = await open_wasm_backend(**options)
        return wasm
    raise ValueError(f"unknown isolate backend {name!r} (inprocess, subprocess or wasm)")
