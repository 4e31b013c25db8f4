"""What several commands do alike: act on each named object, print what `inspect` found."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from berth.errors import BerthError, NotFound

# What docker's CLI exits with when a command on named objects (rm, stop, kill, start, wait,
# inspect, network rm, volume rm …) failed for some of them: its generic 1, not the 125 of a
# `run` that berth could not carry out.
FAILED_FOR_SOME = 1


def for_each(names: Sequence[str], fn: Callable[[str], Any], missing_ok: bool = False) -> int:
    """docker's way with `rm a b c`: act on each, print what `fn` returns (a line, or lines),
    report each failure as "Error: …" and go on; FAILED_FOR_SOME when any failed. With
    `missing_ok` (`rm -f`, docker 20.10+) a name that does not exist is reported and is no
    failure."""
    failed = False
    for n in names:
        try:
            out = fn(n)
        except BerthError as e:
            print(f"Error: {e}", file=sys.stderr)
            failed = failed or not (missing_ok and isinstance(e, NotFound))
            continue
        if out is None:
            continue
        for line in (out if isinstance(out, list) else [out]):
            print(line)
    return FAILED_FOR_SOME if failed else 0


def emit_inspect(names: Sequence[str], describe: Callable[[str], dict[str, Any]],
                 template: str) -> int:
    """`inspect`: a JSON array of what `describe` gives for each name (or each through the
    --format template), "Error: …" for the names it cannot find; FAILED_FOR_SOME when any
    was missing."""
    from berth.cli import format as fmt
    docs, errors = [], []
    for n in names:
        try:
            docs.append(describe(n))
        except BerthError as e:
            errors.append(str(e))
    if template:
        tpl = fmt.Template(template)
        sys.stdout.write("".join(tpl.execute(d) + "\n" for d in docs))
    else:
        sys.stdout.write(fmt.json_indent(docs) + "\n")
    for e in errors:
        print(f"Error: {e}", file=sys.stderr)
    return FAILED_FOR_SOME if errors else 0
