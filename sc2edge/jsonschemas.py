"""JSON Schemas (Draft 2020-12) of sc2edge's file formats, shipped in the package: the bundle manifest (v1 and
v2) and the bench report. For tools and tests; the runtime's own reader (``sc2edge.runtime.manifest``) does not
need the ``jsonschema`` package."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from sc2edge._lazy import lazy_import
from sc2edge.errors import Sc2edgeError

SCHEMAS = {"bundle-manifest": "bundle-manifest.schema.json", "bench-report": "bench-report.schema.json"}


def load_schema(name: str) -> dict[str, Any]:
    """The schema called ``name`` (a key of ``SCHEMAS``)."""
    return json.loads(resources.files("sc2edge").joinpath(f"schemas/{SCHEMAS[name]}").read_text())


def validate(document: Any, name: str) -> None:
    """Raise Sc2edgeError naming the first place where ``document`` breaks the schema ``name``."""
    jsonschema = lazy_import("jsonschema")
    validator = jsonschema.Draft202012Validator(load_schema(name))
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "(top level)"
        raise Sc2edgeError(f"not a valid {name}: at {where}: {error.message[:200]}")
