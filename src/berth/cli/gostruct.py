"""A Go struct for `--format` templates whose JSON names differ from its field names.

docker's `events`, `info` and `version` run their templates over Go structs with json tags:
`{{.Status}}` reads the field, `{{json .}}` writes `"status"` (and leaves it out when empty,
for `omitempty`). berth.cli.format sees a Mapping as a struct (fields by key) and marshals
`items()` in order; `Struct` keeps the Go names as its keys and gives `items()` the tags.

    Struct([("Status", "status,omitempty", "start"), ("Type", "", "container")])

A tag is Go's: "" (the field's own name), "name", ",omitempty", "name,omitempty", or "-"
(never marshalled). Only the standard library is imported.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["Struct", "from_json"]


def _empty(v: Any) -> bool:
    """encoding/json's isEmptyValue: false, 0, "", nil, and empty maps and slices."""
    return v is None or v is False or (isinstance(v, (int, float)) and not isinstance(v, bool)
                                       and v == 0) or (hasattr(v, "__len__") and len(v) == 0)


class Struct(dict):  # type: ignore[type-arg]
    """Fields by Go name for templates; `items()` (what the json function marshals) by tag."""

    def __init__(self, fields: Iterable[tuple[str, str, Any]]) -> None:
        fields = list(fields)
        super().__init__((name, value) for name, _, value in fields)
        self._tags = [(name, tag) for name, tag, _ in fields]

    def fields(self) -> list[tuple[str, str, Any]]:
        """(Go name, tag, value) of each field, in order: to embed this struct in another."""
        return [(name, tag, dict.__getitem__(self, name)) for name, tag in self._tags]

    def items(self) -> Any:  # the json function's view: tag names, omitempty applied
        out = []
        for name, tag in self._tags:
            if tag == "-":
                continue
            key, _, opts = tag.partition(",")
            value = dict.__getitem__(self, name)
            if "omitempty" in opts.split(",") and _empty(value):
                continue
            out.append((key or name, value))
        return out


def from_json(doc: dict[str, Any], renamed: dict[str, str] | None = None,
              omitempty: Iterable[str] = ()) -> Struct:
    """A struct over an API document (JSON names, in order): `renamed` maps a JSON name to its
    Go field name when they differ ("HttpProxy" -> "HTTPProxy"); `omitempty` names the JSON
    keys that are left out when empty."""
    renamed = renamed or {}
    skip = set(omitempty)
    return Struct((renamed.get(k, k), (k if k not in skip else f"{k},omitempty"), v)
                  for k, v in doc.items())
