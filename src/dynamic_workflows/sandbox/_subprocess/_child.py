"""Runs inside a confined child, after confinement: hand the channel to the guest runtime.

The exit code tells the host why the child ended when the channel could not: a
``MemoryError`` that escaped the guest (RLIMIT_AS) and SIGXCPU (the RLIMIT_CPU backstop) get
their own codes, which the host maps to ``IsolateLimitError(limit)``.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import NoReturn

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_MEMORY = 112
EXIT_CPU = 113
EXIT_CONFINE = 114


def _on_sigxcpu(signum: int, frame: FrameType | None) -> None:
    # A pid-namespace init ignores SIGXCPU unless it has a handler; exit cleanly instead.
    os._exit(EXIT_CPU)


def run_guest(guest: str, channel: int) -> NoReturn:
    """``guest.serve(channel)``, then exit with a code that says how it ended."""
    signal.signal(signal.SIGXCPU, _on_sigxcpu)
    code = EXIT_OK
    try:
        sys.modules[guest].serve(channel)
    except MemoryError:
        code = EXIT_MEMORY
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_ERROR
    except BaseException:
        code = EXIT_ERROR
    os._exit(code)
