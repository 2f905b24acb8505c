"""Requests checked against YouTube's discovery document, the one shipped inside
google-api-python-client (googleapiclient/discovery_cache/documents/youtube.v3.json).

- query parameters: each must be a parameter of the method or a standard one, required
  ones present, booleans "true"/"false", enums among their values, repeated or not;
- a request body: JSON Schema built from the document's `schemas` (a `$ref: X` becomes
  `#/definitions/X`), checked with jsonschema's Draft 7 validator.

google-api-python-client is a test-only dependency (pyproject's `test` extra).
"""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from typing import Any

import jsonschema

DOCUMENT = "discovery_cache/documents/youtube.v3.json"


@functools.cache
def document() -> dict[str, Any]:
    return json.loads((resources.files("googleapiclient") / DOCUMENT).read_text())


def method(resource: str, name: str) -> dict[str, Any]:
    return document()["resources"][resource]["methods"][name]


def _convert(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in ("description", "enumDescriptions", "id", "annotations",
                       "deprecated", "enumDeprecated", "readOnly"):
                continue
            if key == "$ref":
                out["$ref"] = f"#/definitions/{value}"
            elif key == "format" and value in ("int64", "uint64", "int32", "uint32",
                                               "byte", "google-datetime", "google-duration"):
                continue
            else:
                out[key] = _convert(value)
        return out
    if isinstance(node, list):
        return [_convert(v) for v in node]
    return node


@functools.cache
def _validator(schema: str) -> jsonschema.Draft7Validator:
    definitions = {name: _convert(copy.deepcopy(body))
                   for name, body in document()["schemas"].items()}
    return jsonschema.Draft7Validator({"$ref": f"#/definitions/{schema}",
                                       "definitions": definitions},
                                      format_checker=jsonschema.FormatChecker())


def body_errors(schema: str, body: Any) -> list[str]:
    """What the discovery schema finds wrong with a request body ([] when valid)."""
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(body)'}: {e.message}"
            for e in _validator(schema).iter_errors(body)]


def query_errors(resource: str, name: str, query: dict[str, list[str]]) -> list[str]:
    """What the discovery document finds wrong with a request's query parameters."""
    spec = method(resource, name).get("parameters", {})
    standard = document().get("parameters", {})
    # The media-upload protocol's own parameters, which the document does not list.
    upload = {"uploadType": {"type": "string",
                             "enum": ["resumable", "media", "multipart"]},
              "upload_id": {"type": "string"}}
    errors = []
    for key, values in query.items():
        param = spec.get(key) or standard.get(key) or upload.get(key)
        if param is None:
            errors.append(f"{key}: not a parameter of {resource}.{name}")
            continue
        if len(values) > 1 and not param.get("repeated"):
            errors.append(f"{key}: given {len(values)} times")
        for value in values:
            if param.get("type") == "boolean" and value not in ("true", "false"):
                errors.append(f"{key}: {value!r} is not a boolean")
            if param.get("type") == "integer" and not value.lstrip("-").isdigit():
                errors.append(f"{key}: {value!r} is not an integer")
            if "enum" in param and value not in param["enum"]:
                errors.append(f"{key}: {value!r} is not one of {param['enum']}")
    for key, param in spec.items():
        if param.get("required") and key not in query:
            errors.append(f"{key}: required by {resource}.{name}")
    return errors


def accepts(resource: str, name: str, content_type: str) -> bool:
    """Whether the method's mediaUpload takes this content type."""
    accept = method(resource, name).get("mediaUpload", {}).get("accept", [])
    base = content_type.split(";")[0].strip().lower()
    return any(base == a or (a.endswith("/*") and base.startswith(a[:-1])) for a in accept)
