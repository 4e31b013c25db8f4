"""JSON through the C accelerator alone: `loads` and `dumps` without importing `json`.

`import json` pulls in `re` and `enum` (about 7 ms on these machines), and every container
start parses config.json and writes state.json. CPython's `_json` module holds the scanner and
encoder that `json` wraps; this module drives them directly and behaves like `json.loads` /
`json.dumps(obj, separators=(",", ":"))` for the documents the runtime reads and writes.
Errors raise ValueError with the position, as json.JSONDecodeError (a ValueError) does.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:
    import _json
except ImportError:  # not CPython: the plain module
    _json = None  # type: ignore[assignment]

_WS = " \t\n\r"
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _Context:
    """The attributes _json.make_scanner reads from a JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__
    memo: dict[str, str] = {}


_scan = _json.make_scanner(_Context()) if _json is not None else None
_encode, _encode_sorted = (
    (_json.make_encoder(None, None, _json.encode_basestring_ascii, None, ":", ",",
                        sort, False, True) for sort in (False, True))
    if _json is not None else (None, None))


def loads(text: str | bytes) -> Any:
    if _scan is None:
        import json
        return json.loads(text)
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8-sig")
    start = len(text) - len(text.lstrip(_WS))
    try:
        value, end = _scan(text, start)
    except StopIteration as e:
        raise ValueError(f"Expecting value: char {e.value}") from None
    except SystemError:
        # The C scanner reports some syntax errors through json.decoder.JSONDecodeError,
        # which it finds only if json is imported; without it, SystemError. On this error
        # path the plain module is worth its cost: it names the position.
        import json
        return json.loads(text)
    if text[end:].strip(_WS):
        raise ValueError(f"Extra data: char {end}")
    return value


def dumps(obj: Any, sort_keys: bool = False) -> str:
    if _encode is None or _encode_sorted is None:
        import json
        return json.dumps(obj, separators=(",", ":"), sort_keys=sort_keys)
    return "".join((_encode_sorted if sort_keys else _encode)(obj, 0))
