"""JSON Schema validation of records, with errors that name the field path and the bad value."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError as SchemaError
from referencing import Registry, Resource

from policyctl.errors import ValidationError

SCHEMAS = ("event", "input", "decision", "fixture", "override_header", "cluster", "clusters", "config")
_BASE = "https://policyctl.dev/schemas/"


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema shipped for `name` (one of SCHEMAS)."""
    text = resources.files("policyctl.model").joinpath(f"schemas/{name}.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator(name: str) -> Draft202012Validator:
    registry: Registry = Registry().with_resources(
        (f"{_BASE}{n}.json", Resource.from_contents(load_schema(n))) for n in SCHEMAS
    )
    return Draft202012Validator(load_schema(name), registry=registry, format_checker=FormatChecker())


def format_path(parts: Iterable[str | int], root: str = "") -> str:
    """`["input", "agents", 0, "id"]` -> `input.agents[0].id`."""
    out = root
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _describe(err: SchemaError, root: str) -> tuple[str, str]:
    path = format_path(err.absolute_path, root)
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else "?"
        return format_path([missing], path), "required field is missing"
    if err.validator == "enum":
        allowed = ", ".join(str(v) for v in err.validator_value)
        return path, f"{_short(err.instance)} is not one of: {allowed}"
    if err.validator == "type":
        return path, f"expected {err.validator_value}, got {_json_type(err.instance)} {_short(err.instance)}"
    if err.validator == "additionalProperties":
        return path, err.message.replace("Additional properties are not allowed", "unknown field")
    if err.validator == "minItems" and isinstance(err.instance, list):
        return path, f"needs at least {err.validator_value} items, got {len(err.instance)}"
    if "propertyNames" in err.relative_schema_path or "propertyNames" in err.absolute_schema_path:
        hint = err.schema.get("description") if isinstance(err.schema, dict) else None
        return path, f"key {_short(err.instance)} is not allowed here" + (f": {hint}" if hint else "")
    if err.validator == "format":
        return path, f"{_short(err.instance)} is not a valid {err.validator_value}"
    return path, err.message


def schema_errors(name: str, record: Any, root: str = "") -> list[tuple[str, str]]:
    """Every schema violation of `record` as (field path, message), most specific first."""
    errors = sorted(_validator(name).iter_errors(record), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    seen: set[tuple[str, str]] = set()
    out: list[tuple[str, str]] = []
    for err in errors:
        # if/then failures repeat the inner error; keep the leaves
        if err.validator in ("allOf", "if", "then"):
            continue
        item = _describe(err, root)
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def validate(name: str, record: Any, *, where: str = "", root: str = "") -> None:
    """Raise ValidationError naming the first bad field of `record` against schema `name`."""
    errors = schema_errors(name, record, root)
    if errors:
        path, message = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ValidationError(message + more, path=path, where=where)
