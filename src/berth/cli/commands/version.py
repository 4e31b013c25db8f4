"""`berth version`: client and runtime versions, in docker's layout."""

from __future__ import annotations

import os
import platform
import sys


def run(args: list[str]) -> int:
    from berth import __version__
    if args and args[0] in ("-h", "--help"):
        print("Usage:  berth version\n\nShow the berth version information")
        return 0
    if args:
        print(f"berth version: unexpected argument {args[0]!r}", file=sys.stderr)
        return 125
    print(f"""Client:
 Version:           {__version__}
 Python version:    {platform.python_version()}
 OS/Arch:           linux/{_arch()}

Runtime:
 Name:              berth-runtime
 Version:           {__version__}
 OCI spec:          1.0.2
 Kernel:            {os.uname().release}""")
    return 0


def _arch() -> str:
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)
