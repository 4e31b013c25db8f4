"""Typed readers for JSON documents: each checks one value and, when it is wrong, raises
InvalidConfig naming the field (`process.args[1]`, `linux.resources.memory.limit`)."""

from __future__ import annotations

from berth.errors import InvalidConfig

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def read_obj(v: Any, f: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise InvalidConfig(f, f"must be an object, not {type(v).__name__}")
    return v


def read_str(v: Any, f: str, *, empty: bool = True) -> str:
    if not isinstance(v, str):
        raise InvalidConfig(f, f"must be a string, not {type(v).__name__}")
    if not empty and not v:
        raise InvalidConfig(f, "must not be empty")
    return v


def read_int(v: Any, f: str, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidConfig(f, f"must be an integer, not {type(v).__name__}")
    if lo is not None and v < lo:
        raise InvalidConfig(f, f"must be >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise InvalidConfig(f, f"must be <= {hi}, got {v}")
    return v


def read_bool(v: Any, f: str) -> bool:
    if not isinstance(v, bool):
        raise InvalidConfig(f, f"must be true or false, not {v!r}")
    return v


def read_strs(v: Any, f: str) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise InvalidConfig(f, f"must be an array of strings, not {type(v).__name__}")
    return tuple(read_str(x, f"{f}[{i}]") for i, x in enumerate(v))


def read_abs(v: Any, f: str) -> str:
    s = read_str(v, f, empty=False)
    if not s.startswith("/"):
        raise InvalidConfig(f, f"must be an absolute path, got {s!r}")
    return s


def read_list(v: Any, f: str) -> list[Any]:
    if not isinstance(v, list):
        raise InvalidConfig(f, f"must be an array, not {type(v).__name__}")
    return v
