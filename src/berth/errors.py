"""The one exception tree of berth.

    BerthError                      anything berth raises on purpose
     +-- NotFound                   an object (container, image, file) does not exist
     +-- Conflict                   the object exists but is in the wrong state
     +-- InvalidArgument            input (flag, config field, signal) is malformed
     |    +-- InvalidConfig         an OCI config.json field is missing or wrong; names the field
     +-- ResourceLimit              the host cannot grant what was asked (rlimit, capability)
     +-- RuntimeFailure             the kernel refused a step of container creation
     +-- ImageFormatError           a tarball, manifest or layer is not what it claims

Callers test the class, never the message. Only the fronts (CLI, API) print and exit.
"""

from __future__ import annotations


class BerthError(Exception):
    """Base of every error berth raises deliberately."""

    exit_code = 125
    http_status = 500


class NotFound(BerthError):
    http_status = 404


class Conflict(BerthError):
    http_status = 409


class InvalidArgument(BerthError):
    http_status = 400


class InvalidConfig(InvalidArgument):
    """A field of an OCI runtime config is missing or malformed."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"config.json: {field}: {problem}")
        self.field = field
        self.problem = problem


class ResourceLimit(BerthError):
    http_status = 500


class RuntimeFailure(BerthError):
    """A step of container creation or execution failed in the kernel."""


class ImageFormatError(BerthError):
    http_status = 400


class NoSuchContainer(NotFound):
    """runc's words by default (the runtime); the engine passes docker's."""

    def __init__(self, ref: str, message: str = "") -> None:
        super().__init__(message or f"container does not exist: {ref}")
        self.ref = ref
