"""OCI hooks: each runs with the container's state JSON on stdin, within its timeout."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from berth.errors import RuntimeFailure
from berth.oci.runtime_spec import Hook


def run_hooks(kind: str, hooks: tuple[Hook, ...], state: dict[str, Any]) -> None:
    payload = json.dumps(state).encode()
    for i, hook in enumerate(hooks):
        try:
            proc = subprocess.run(
                list(hook.args) or [hook.path], executable=hook.path, input=payload,
                env=dict(e.split("=", 1) for e in hook.env), capture_output=True,
                timeout=hook.timeout, close_fds=True)
        except subprocess.TimeoutExpired as e:
            raise RuntimeFailure(f"hooks.{kind}[{i}] {hook.path}: timed out after {hook.timeout}s") from e
        except OSError as e:
            raise RuntimeFailure(f"hooks.{kind}[{i}] {hook.path}: {e.strerror}") from e
        if proc.returncode != 0:
            detail = proc.stderr.decode(errors="replace").strip()
            raise RuntimeFailure(f"hooks.{kind}[{i}] {hook.path} exited with {proc.returncode}"
                                 + (f": {detail}" if detail else ""))
