"""Per-tenant isolate limits: a frozen dataclass with ``with_*()`` copies."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class IsolateLimits:
    """What one tenant's isolate may use. A tenant over a limit gets ``IsolateLimitError``
    in the affected step (S40) and the isolate is replaced; no other tenant notices."""

    memory_mb: int = 256
    """Address space (subprocess: RLIMIT_AS) or linear memory (wasm: store limits)."""
    cpu_seconds: float = 30.0
    """CPU time one isolate may burn per call before it is stopped."""
    cpu_seconds_total: float = 3600.0
    """CPU time the isolate may burn over its whole life (subprocess: RLIMIT_CPU, soft <
    hard); a backstop behind the per-call budget, after which the isolate is replaced."""
    wall_seconds: float = 600.0
    """Wall time one call may take before the host kills the isolate (a step's own
    ``timeout`` is enforced inside the isolate first)."""
    max_open_files: int = 64
    max_file_bytes: int = 0
    """RLIMIT_FSIZE: isolates have nowhere to write, so 0 by default."""
    max_processes: int = 1
    max_log_bytes: int = 1 << 20
    """Captured print/logging output kept per call; beyond it lines are dropped and counted."""

    def __post_init__(self) -> None:
        for name in ("memory_mb", "cpu_seconds", "cpu_seconds_total", "wall_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"IsolateLimits.{name} must be a positive number, not {value!r}")
        for name in ("max_open_files", "max_file_bytes", "max_processes", "max_log_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"IsolateLimits.{name} must be an integer >= 0, not {value!r}")

    def with_memory_mb(self, value: int) -> IsolateLimits:
        return replace(self, memory_mb=value)

    def with_cpu_seconds(self, value: float) -> IsolateLimits:
        return replace(self, cpu_seconds=value)

    def with_wall_seconds(self, value: float) -> IsolateLimits:
        return replace(self, wall_seconds=value)

    def with_cpu_seconds_total(self, value: float) -> IsolateLimits:
        return replace(self, cpu_seconds_total=value)

    def with_max_processes(self, value: int) -> IsolateLimits:
        return replace(self, max_processes=value)

    def to_wire(self) -> dict[str, float | int]:
        return {
            "memory_mb": self.memory_mb,
            "cpu_seconds": self.cpu_seconds,
            "cpu_seconds_total": self.cpu_seconds_total,
            "wall_seconds": self.wall_seconds,
            "max_open_files": self.max_open_files,
            "max_file_bytes": self.max_file_bytes,
            "max_processes": self.max_processes,
            "max_log_bytes": self.max_log_bytes,
        }


DEFAULT_LIMITS = IsolateLimits()
