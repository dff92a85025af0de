"""The standard-library modules the wasm runner offers tenant code.

The runner component holds only what its guest imported while componentize-py pre-initialised
it, so this tuple *is* the wasm backend's stdlib. It is copied verbatim into the component
(the guest imports it as ``dynwf_allowlist``), so it must stay a plain literal.
"""

ALLOWLIST: tuple[str, ...] = (
    "abc",
    "asyncio",
    "base64",
    "binascii",
    "bisect",
    "calendar",
    "collections",
    "collections.abc",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "enum",
    "fractions",
    "functools",
    "graphlib",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "logging",
    "math",
    "numbers",
    "operator",
    "pprint",
    "random",
    "re",
    "secrets",
    "statistics",
    "string",
    "struct",
    "textwrap",
    "time",
    "traceback",
    "types",
    "typing",
    "unicodedata",
    "urllib.parse",
    "uuid",
    "weakref",
    "zlib",
    "zoneinfo",
)
"""Importable by tenants, besides their own modules and ``dynamic_workflows`` (the sdk)."""

HIDDEN: tuple[str, ...] = ("_strptime",)
"""Imported lazily by allowlisted functions (``datetime.strptime``), so built in as well."""
