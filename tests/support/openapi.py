"""Checks a real response against the API's OpenAPI document (the subset of JSON Schema the document uses)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import httpx

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = doc
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def errors_of(doc: dict[str, Any], schema: dict[str, Any], value: Any, where: str = "$") -> list[str]:
    """Every way `value` breaks `schema` (empty when it conforms)."""
    schema = resolve(doc, schema)
    if value is None:
        return [] if schema.get("nullable") or not schema.get("type") else [f"{where}: null not allowed"]
    out: list[str] = []
    kind = schema.get("type")
    if kind:
        ok = isinstance(value, _TYPES[kind]) and not (kind in ("integer", "number") and isinstance(value, bool))
        if not ok:
            return [f"{where}: expected {kind}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{where}: {value!r} not in {schema['enum']}")
    fmt = schema.get("format")
    if isinstance(value, str) and fmt in ("date-time", "date"):
        out += _format_errors(fmt, value, where)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        out += [f"{where}: missing {k}" for k in schema.get("required", []) if k not in value]
        if schema.get("additionalProperties") is False:
            out += [f"{where}: unexpected {k}" for k in value if k not in props]
        for key, sub in props.items():
            if key in value:
                out += errors_of(doc, sub, value[key], f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for n, item in enumerate(value):
            out += errors_of(doc, schema["items"], item, f"{where}[{n}]")
    return out


def _format_errors(fmt: str, value: str, where: str) -> list[str]:
    if fmt == "date":
        ok = bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", value))
    else:
        try:
            ok = dt.datetime.fromisoformat(value).utcoffset() is not None and "T" in value
        except ValueError:
            ok = False
    return [] if ok else [f"{where}: {value!r} is not a {fmt}"]


def operation(doc: dict[str, Any], template: str, method: str) -> dict[str, Any]:
    return doc["paths"][template][method.lower()]  # type: ignore[no-any-return]


def conformance_errors(doc: dict[str, Any], template: str, resp: httpx.Response) -> list[str]:
    """Whether the status code is documented for the operation and the body matches its schema."""
    op = operation(doc, template, resp.request.method)
    documented = op["responses"].get(str(resp.status_code))
    if documented is None:
        return [f"{resp.request.method} {template}: status {resp.status_code} is not documented"]
    content = documented.get("content")
    if not content:
        return [] if not resp.content else [f"{template}: {resp.status_code} has an undocumented body"]
    media = resp.headers.get("content-type", "").split(";")[0].strip()
    if media not in content:
        return [f"{template}: {resp.status_code} answered {media}, documented {sorted(content)}"]
    schema = content[media].get("schema")
    if media != "application/json" or schema is None:
        return []
    return [f"{resp.request.method} {template} {resp.status_code} {e}" for e in errors_of(doc, schema, resp.json())]
