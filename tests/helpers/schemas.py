"""Validators for the OCI image-spec's JSON schemas (../shared/spec/image-spec-schema)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

SCHEMAS = Path(os.environ.get("BERTH_SPEC", "/work/shared/spec/image-spec-schema"))


def validator(schema_file: str) -> Any:
    """A Draft 4 validator for one schema file; the test is skipped without jsonschema or the
    schemas."""
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    from referencing.jsonschema import DRAFT4

    if not SCHEMAS.is_dir():
        pytest.skip("schemas not present")

    def retrieve(uri: str) -> Any:
        # the schemas refer to each other by file name relative to nested "id"s: map any URI
        # to the local file of the same name
        name = uri.rstrip("/").rsplit("/", 1)[-1].split("#")[0]
        return DRAFT4.create_resource(json.loads((SCHEMAS / name).read_text()))

    registry = referencing.Registry(retrieve=retrieve)  # type: ignore[call-arg]
    schema = json.loads((SCHEMAS / schema_file).read_text())
    return jsonschema.Draft4Validator(schema, registry=registry,
                                      format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
