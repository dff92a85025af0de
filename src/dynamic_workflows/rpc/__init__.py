"""The channel between the host and an isolate: frames, message models, capabilities.

One connected AF_UNIX stream socket per isolate; 4-byte length-prefixed JSON frames, typed
and size- and depth-checked on arrival; calls multiplexed by id, cancellable both ways;
objects handed over as capabilities only through an explicit allow-list of methods.
Errors cross as ``{"name", "message"}``; nothing is ever unpickled, evaluated or imported.

Knows nothing of SQL, workflows or isolates: it imports only ``sdk`` (for the error tree),
msgspec and orjson, so the guest runtime inside an isolate uses it too.
"""

from ._caps import Capability, ExportTable, Exposed, Exposure, Exposures, expose, exposure_of
from ._connection import ROOT, Connection, LogHandler, RemoteMethod, RemoteObject
from ._errors import CapabilityError, ChannelClosedError, FrameTooLargeError, ProtocolError
from ._frames import (
    HEADER,
    MAX_DEPTH,
    MAX_FRAME,
    MAX_TRUSTED_FRAME,
    Call,
    Cancel,
    Error,
    Frame,
    Log,
    Release,
    Result,
    decode_frame,
    encode_frame,
)

__all__ = [
    "HEADER",
    "MAX_DEPTH",
    "MAX_FRAME",
    "MAX_TRUSTED_FRAME",
    "ROOT",
    "Call",
    "Cancel",
    "Capability",
    "CapabilityError",
    "ChannelClosedError",
    "Connection",
    "Error",
    "ExportTable",
    "Exposed",
    "Exposure",
    "Exposures",
    "Frame",
    "FrameTooLargeError",
    "Log",
    "LogHandler",
    "ProtocolError",
    "Release",
    "RemoteMethod",
    "RemoteObject",
    "Result",
    "decode_frame",
    "encode_frame",
    "expose",
    "exposure_of",
]
