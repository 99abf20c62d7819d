"""The simulator's own input checker, read straight from the published schema files.

Deliberately independent of ``batchrun.validation``: if the client's validator has a bug, the
simulator must still answer 422 the way the real service would, so tests catch the bug.
It copes with the published documents as they are: type ``"float"``, ``format`` hints such as
``image_uri``, and the text-to-video ``multi_prompt.items`` that lists fields without a
``properties`` wrapper.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from importlib.resources import files
from typing import Any

SCHEMA_FILES = {
    "text-to-video": "kling-3.0-text-to-video.input.json",
    "image-to-video": "kling-3.0-image-to-video.input.json",
}
TIERS = ("standard", "pro", "4k")

#: Every model id the simulator knows, mapped to its input schema file name.
MODELS: dict[str, str] = {
    f"kling/kling-3.0/{tier}/{mode}": name for tier in TIERS for mode, name in SCHEMA_FILES.items()
}

#: Formats that name a URL the service fetches: they must be http(s) URLs.
URL_FORMATS = frozenset({"image_uri", "video_uri", "uri"})

Detail = dict[str, Any]


@lru_cache(maxsize=None)
def _load(name: str) -> dict[str, Any]:
    return json.loads((files("batchrun") / "schemas" / name).read_text(encoding="utf-8"))


def input_schema(model_id: str) -> dict[str, Any] | None:
    """The published input schema of ``model_id``, or None for a model the service does not know."""
    name = MODELS.get(model_id)
    return None if name is None else _load(name)


def _problem(loc: list[Any], msg: str, kind: str) -> Detail:
    return {"loc": ["body", *loc], "msg": msg, "type": kind}


def _item_properties(items: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The fields of an array item object, with or without the ``properties`` wrapper."""
    if "properties" in items:
        return items["properties"]
    if "type" not in items and items and all(isinstance(v, Mapping) for v in items.values()):
        return items  # text-to-video multi_prompt: fields listed directly
    return None


def _check_value(value: Any, spec: Mapping[str, Any], loc: list[Any], out: list[Detail]) -> None:
    kind = spec.get("type")
    if kind == "string":
        if not isinstance(value, str):
            out.append(_problem(loc, "Input should be a valid string", "string_type"))
            return
        if spec.get("format") in URL_FORMATS and not value.startswith(("https://", "http://")):
            out.append(_problem(loc, "Input should be an http(s) URL", "url_parsing"))
    elif kind == "integer":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            out.append(_problem(loc, "Input should be a valid integer", "int_type"))
            return
        if isinstance(value, float) and not value.is_integer():
            out.append(_problem(loc, "Input should be a valid integer, got a number with a fractional part", "int_from_float"))
            return
    elif kind in ("float", "number"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            out.append(_problem(loc, "Input should be a valid number", "float_type"))
            return
    elif kind == "boolean":
        if not isinstance(value, bool):
            out.append(_problem(loc, "Input should be a valid boolean", "bool_type"))
            return
    elif kind == "array":
        if not isinstance(value, list):
            out.append(_problem(loc, "Input should be a valid list", "list_type"))
            return
    elif kind == "object":
        if not isinstance(value, dict):
            out.append(_problem(loc, "Input should be a valid dictionary", "dict_type"))
            return

    if "enum" in spec and value not in spec["enum"]:
        allowed = ", ".join(repr(v) for v in spec["enum"])
        out.append(_problem(loc, f"Input should be {allowed}", "enum"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in spec and value < spec["minimum"]:
            out.append(_problem(loc, f"Input should be greater than or equal to {spec['minimum']}", "greater_than_equal"))
        if "maximum" in spec and value > spec["maximum"]:
            out.append(_problem(loc, f"Input should be less than or equal to {spec['maximum']}", "less_than_equal"))
    if isinstance(value, list):
        if "minItems" in spec and len(value) < spec["minItems"]:
            out.append(_problem(loc, f"List should have at least {spec['minItems']} items", "too_short"))
        if "maxItems" in spec and len(value) > spec["maxItems"]:
            out.append(_problem(loc, f"List should have at most {spec['maxItems']} items", "too_long"))
        items = spec.get("items")
        if isinstance(items, Mapping):
            props = _item_properties(items)
            for index, item in enumerate(value):
                if props is not None:
                    _check_object(item, props, (), [*loc, index], out)
                else:
                    _check_value(item, items, [*loc, index], out)


def _check_object(
    value: Any, props: Mapping[str, Any], required: tuple[str, ...] | list[str], loc: list[Any], out: list[Detail]
) -> None:
    if not isinstance(value, dict):
        out.append(_problem(loc, "Input should be a valid dictionary", "dict_type"))
        return
    for name in required:
        if name not in value:
            out.append(_problem([*loc, name], "Field required", "missing"))
    for name, item in value.items():
        spec = props.get(name)
        if spec is None:
            out.append(_problem([*loc, name], "Extra inputs are not permitted", "extra_forbidden"))
        else:
            _check_value(item, spec, [*loc, name], out)


def _default(spec: Mapping[str, Any] | None, fallback: Any) -> Any:
    return spec.get("default", fallback) if isinstance(spec, Mapping) else fallback


def check_input(schema: Mapping[str, Any], body: Any) -> list[Detail]:
    """Every problem with ``body`` against ``schema``, as a FastAPI-style ``detail`` list."""
    out: list[Detail] = []
    props = schema.get("properties", {})
    _check_object(body, props, list(schema.get("required", ())), [], out)
    if not isinstance(body, dict) or not body.get("multi_prompt") or "multi_prompt" not in props:
        return out
    if any(p["loc"][1:2] in (["multi_prompt"], ["duration"]) for p in out):
        return out  # the sum only means something once both fields are well-formed
    seg_props = _item_properties(props["multi_prompt"].get("items", {})) or {}
    seg_default = _default(seg_props.get("duration"), 5)
    total = sum(seg.get("duration", seg_default) for seg in body["multi_prompt"])
    duration = body.get("duration", _default(props.get("duration"), 5))
    if total != duration:
        out.append(
            _problem(
                ["multi_prompt"],
                f"Value error, multi_prompt durations add up to {total}s but duration is {duration}s",
                "value_error",
            )
        )
    return out
