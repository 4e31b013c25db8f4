"""The conformance suite: the same bundles run by several OCI runtimes through their command
lines (see oci_runtimes.py beside this file).

    oci_runtime   fixture, parametrized over RUNTIMES ("runc", "berth-runtime"; runc is skipped
                  when it is not installed): an OCIRuntime with its own --root under the
                  test's tmp dir. Everything under that root is deleted (--force) after the
                  test, before berth_env checks for leaks.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `import oci_runtimes` whatever pytest's import mode
    sys.path.insert(0, str(HERE))

from oci_runtimes import RUNTIMES, OCIRuntime, make_runtime  # noqa: E402


@pytest.fixture(params=RUNTIMES)
def oci_runtime(request: pytest.FixtureRequest, berth_env) -> Iterator[OCIRuntime]:
    rt = make_runtime(request.param, berth_env.tmp / f"{request.param}-root")
    try:
        yield rt
    finally:
        rt.cleanup()
