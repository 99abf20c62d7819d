"""Check a job's input against its model's published schema, before anything is sent.

Pure. The published schemas are not strict JSON Schema (see API.md): they use the type
``"float"``, formats such as ``image_uri``, and text-to-video's ``multi_prompt.items`` lists its
fields without a ``properties`` wrapper. This module copes with exactly those documents and adds
the rules the schemas only describe in prose (multi-prompt durations add up to ``duration``,
media fields hold https URLs RunComfy can fetch from the internet, the prompt is not blank).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from batchrun.catalog import AUDIO_FIELDS, ModelInfo, suggest

Path_ = tuple[str | int, ...]

URL_FORMATS = frozenset({"image_uri", "image_uris", "video_uri", "uri", "url"})
BOOL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_AUDIO_NAMES = frozenset(AUDIO_FIELDS.values())


@dataclass(frozen=True)
class FieldIssue:
    """One thing wrong with one field of a job's input."""

    path: Path_  #: e.g. ``("multi_prompt", 2, "duration")``; ``()`` for the input as a whole
    message: str  #: one line, naming what was expected

    @property
    def field(self) -> str:
        """The path written the way users write it: ``multi_prompt[2].duration``."""
        text = ""
        for part in self.path:
            if isinstance(part, int):
                text += f"[{part}]"
            else:
                text += f".{part}" if text else part
        return text


def show(value: Any) -> str:
    """A short one-line rendering of a user value for messages."""
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return "`" + text.replace("\n", "\\n") + "`"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else f"a list of {len(value)}"
    return repr(value)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


_EXPECTED = {
    "string": "a string",
    "integer": "an integer",
    "float": "a number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
}


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("float", "number"):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return True  # a type this module does not know: let RunComfy judge


def item_schema(schema: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The schema of an array's items, repairing the text-to-video ``items`` without ``properties``."""
    items = schema.get("items")
    if not isinstance(items, Mapping):
        return None
    if "type" in items or "properties" in items:
        return items
    if items and all(isinstance(v, Mapping) for v in items.values()):
        return {"type": "object", "properties": items}
    return items


#: letters and symbols that show nothing: Hangul fillers, the blank braille pattern
_BLANK_GLYPHS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def _visible(char: str) -> bool:
    """A character that shows: not a space, a format character (U+200B), a combining mark or a
    blank glyph."""
    return (not char.isspace() and char not in _BLANK_GLYPHS
            and unicodedata.category(char) not in ("Cf", "Mn", "Me", "Cc"))


def _is_url_field(name: str | int | None, schema: Mapping[str, Any]) -> bool:
    if schema.get("format") in URL_FORMATS:
        return True
    return isinstance(name, str) and (name.endswith("_url") or name.endswith("_urls"))


#: host names that always mean this machine or its local network, never the internet
_LOCAL_NAMES = ("localhost",)
_LOCAL_SUFFIXES = (".localhost", ".local")
#: a host written as a number, in any form ``inet_aton`` accepts (``2130706433``, ``0x7f.1``)
_NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}\Z")


def _local_host(host: str) -> bool:
    """True when ``host`` names a loopback, private, link-local or otherwise non-public address."""
    host = host.rstrip(".")
    if host in _LOCAL_NAMES or host.endswith(_LOCAL_SUFFIXES):
        return True
    if not _MAYBE_ADDRESS.match(host):
        return False  # a domain name: whether it is public is RunComfy's to find out
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host)
    except ValueError:
        if not _NUMERIC_HOST.match(host):
            return False  # a domain name: whether it is public is RunComfy's to find out
        try:
            address = ipaddress.IPv4Address(_inet_aton(host))
        except ValueError:
            return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def _inet_aton(host: str) -> int:
    """The IPv4 address of a numeric host the way C's ``inet_aton`` reads it; ValueError when it is none."""
    parts = [int(p, 16) if p.startswith("0x") else int(p, 8) if len(p) > 1 and p.startswith("0") else int(p)
             for p in host.split(".")]
    *head, last = parts
    if any(p > 255 for p in head) or last >= 256 ** (4 - len(head)):
        raise ValueError(host)
    value = 0
    for part in head:
        value = value * 256 + part
    return value * 256 ** (4 - len(head)) + last


_SPACE = re.compile(r"\s")  #: what str.isspace() calls a space, found in C rather than per character
#: what an IP address (v4 in any inet_aton form, v6, a zone) may be made of; a host with another
#: character is a domain name, whose check needs no ipaddress parse (and its exception)
_MAYBE_ADDRESS = re.compile(r"[0-9a-fA-FxX.:]+(?:%.*)?\Z", re.DOTALL)


def url_problem(value: str) -> str | None:
    """Why RunComfy could not fetch ``value`` (an https URL to a public host), or None when it could.

    API.md: "Media inputs must be publicly reachable HTTPS URLs". Never raises.
    """
    if _SPACE.search(value):
        return f"must be an https URL without spaces (got {show(value)})"
    try:
        parts = urlsplit(value)
        host = parts.hostname
        scheme = parts.scheme
    except ValueError:
        return f"must be an https URL (got {show(value)})"
    if scheme != "https":
        return f"must be an https URL (RunComfy fetches it from the internet), got {show(value)}"
    if not host:
        return f"must be an https URL with a host (got {show(value)})"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        return f"has an invalid port (got {show(value)})"
    if _local_host(host):
        return f"RunComfy cannot reach a local address (got {show(value)})"
    return None


def _range_message(schema: Mapping[str, Any], value: float) -> str | None:
    low, high = schema.get("minimum"), schema.get("maximum")
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            return f"must be between {low} and {high} (got {show(value)})"
        if low is not None:
            return f"must be at least {low} (got {show(value)})"
        return f"must be at most {high} (got {show(value)})"
    return None


def _check(schema: Mapping[str, Any], value: Any, path: Path_, issues: list[FieldIssue]) -> None:
    kind = schema.get("type")
    name = path[-1] if path else None
    if isinstance(kind, str) and not _type_ok(kind, value):
        if kind in ("float", "number") and isinstance(value, float):
            issues.append(FieldIssue(path, f"must be a finite number (got {value})"))
            return
        got = _kind(value) if value is None or isinstance(value, (dict, list)) else f"{_kind(value)} {show(value)}"
        issues.append(FieldIssue(path, f"must be {_EXPECTED.get(kind, kind)} (got {got})"))
        return
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        allowed = ", ".join(str(v) for v in enum)
        hint = suggest(value, [str(v) for v in enum]) if isinstance(value, str) else None
        extra = f"; did you mean `{hint}`?" if hint else ""
        issues.append(FieldIssue(path, f"must be one of {allowed} (got {show(value)}){extra}"))
        return
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        message = _range_message(schema, value)
        if message:
            issues.append(FieldIssue(path, message))
    elif isinstance(value, str):
        if name == "prompt" and not value.strip():
            issues.append(FieldIssue(path, "must not be empty"))
        elif name == "prompt" and not any(_visible(c) for c in value):
            issues.append(FieldIssue(path, "has no visible character (only invisible or combining marks)"))
        elif _is_url_field(name, schema) and schema.get("type", "string") == "string":
            message = url_problem(value)
            if message:
                issues.append(FieldIssue(path, message))
    elif isinstance(value, list):
        low, high = schema.get("minItems"), schema.get("maxItems")
        if low is not None and len(value) < low:
            issues.append(FieldIssue(path, f"must have at least {low} items (got {len(value)})"))
        if high is not None and len(value) > high:
            issues.append(FieldIssue(path, f"must have at most {high} items (got {len(value)})"))
        items = item_schema(schema)
        url_items = _is_url_field(name, schema)
        for index, item in enumerate(value):
            if items is not None:
                _check(items, item, (*path, index), issues)
            if url_items and isinstance(item, str) and (items is None or "format" not in items):
                message = url_problem(item)
                if message:
                    issues.append(FieldIssue((*path, index), message))
    elif isinstance(value, dict):
        properties = schema.get("properties")
        if isinstance(properties, Mapping):
            _check_object(properties, schema.get("required", ()), value, path, issues, audio=None)


def _check_object(
    properties: Mapping[str, Any],
    required: Any,
    value: Mapping[str, Any],
    path: Path_,
    issues: list[FieldIssue],
    audio: str | None,
) -> None:
    for name in required or ():
        if name not in value:
            issues.append(FieldIssue((*path, name), "required field is missing"))
    for name, item in value.items():
        if not isinstance(name, str):
            issues.append(FieldIssue((*path, str(name)), "field names must be strings"))
            continue
        schema = properties.get(name)
        if schema is None:
            issues.append(FieldIssue((*path, name), _unknown_field(name, properties, audio)))
            continue
        _check(schema, item, (*path, name), issues)


def _unknown_field(name: str, properties: Mapping[str, Any], audio: str | None) -> str:
    hint = audio if audio and name in _AUDIO_NAMES and name != audio else suggest(name, properties)
    if hint:
        return f"unknown field `{name}`; did you mean `{hint}`?"
    return f"unknown field `{name}`; known fields: {', '.join(properties)}"


def _json_problem(value: Any, path: Path_, issues: list[FieldIssue], depth: int = 0) -> None:
    if depth > 100:
        issues.append(FieldIssue(path, "is nested too deeply"))
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                issues.append(FieldIssue((*path, str(key)), "field names must be strings"))
            else:
                _json_problem(item, (*path, key), issues, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _json_problem(item, (*path, index), issues, depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        issues.append(FieldIssue(path, f"must be a finite number (got {value})"))
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        issues.append(FieldIssue(path, f"must be a JSON value (got {type(value).__name__})"))


def _multi_prompt(model: ModelInfo, input: Mapping[str, Any], issues: list[FieldIssue], *, sums: bool) -> None:
    segments = input.get("multi_prompt")
    if not isinstance(segments, list) or not segments:
        return
    items = item_schema(model.properties.get("multi_prompt", {})) or {}
    props = items.get("properties", {}) if isinstance(items, Mapping) else {}
    segment_default = props.get("duration", {}).get("default") if isinstance(props, Mapping) else None
    total: int | None = 0
    for index, segment in enumerate(segments):
        if not isinstance(segment, dict):
            return
        if "prompt" not in segment:
            issues.append(FieldIssue(("multi_prompt", index, "prompt"), "each segment needs a prompt"))
        seconds = segment.get("duration", segment_default)
        if total is None or not isinstance(seconds, int) or isinstance(seconds, bool):
            total = None
        else:
            total += seconds
    duration = input.get("duration", model.default_duration)
    if not sums or total is None or not isinstance(duration, int) or isinstance(duration, bool):
        return
    if total != duration:
        origin = "" if "duration" in input else " (the default)"
        issues.append(FieldIssue(
            ("multi_prompt",),
            f"segment durations add up to {total} s but duration is {duration} s{origin}; they must be equal",
        ))


_SCALARS = frozenset({str, int, float, bool, type(None)})
_CACHE: dict[tuple[Any, ...], tuple[FieldIssue, ...]] = {}
_CACHE_LIMIT = 50_000
_PER_FIELD_LIMIT = 1_000  # a field with more distinct values (templated prompts) is not worth caching
_FIELD_COUNTS: dict[tuple[int, str], int] = {}
_SCHEMAS: dict[int, Mapping[str, Any]] = {}  # keeps cached schemas alive so their ids stay unique


def _check_fields(model: ModelInfo, input: Mapping[str, Any], issues: list[FieldIssue],
                  unreadable: frozenset[str]) -> None:
    """Per-field checks; results for scalar values are cached (100,000 matrix jobs share most)."""
    properties = model.properties
    schema_id = id(model.schema)
    _SCHEMAS.setdefault(schema_id, model.schema)
    for name in model.schema.get("required", ()):
        if name not in input and name not in unreadable:
            issues.append(FieldIssue((name,), "required field is missing"))
    for name, value in input.items():
        kind = type(value)
        if kind in _SCALARS and isinstance(name, str):
            key = (schema_id, model.audio_field, name, kind, value)
            found = _CACHE.get(key)
            if found is None:
                fresh: list[FieldIssue] = []
                _check_object(properties, (), {name: value}, (), fresh, model.audio_field)
                found = tuple(fresh)
                field_key = (schema_id, name)
                seen = _FIELD_COUNTS.get(field_key, 0)
                if seen < _PER_FIELD_LIMIT:
                    _FIELD_COUNTS[field_key] = seen + 1
                    if len(_CACHE) >= _CACHE_LIMIT:
                        _CACHE.clear()
                        _FIELD_COUNTS.clear()
                    _CACHE[key] = found
            issues.extend(found)
        else:
            _check_object(properties, (), {name: value}, (), issues, model.audio_field)


def validate_input(model: ModelInfo | None, input: object,
                   unreadable: frozenset[str] = frozenset()) -> list[FieldIssue]:
    """Every problem with ``input`` for ``model``; an empty list means RunComfy should accept it.

    With ``model`` None (an unknown model, allowed by ``--allow-unknown-model``) only checks that
    the input is a JSON object. ``unreadable`` names fields whose value the user wrote but could
    not be read (a CSV cell such as duration `abc`, already reported): they are left out, and so
    is every rule that depends on them (required, the multi-prompt sum), whose message would be
    about a value the user never wrote.
    """
    if not isinstance(input, dict):
        return [FieldIssue((), f"the input must be a mapping of field names to values (got {_kind(input)})")]
    if unreadable:
        input = {name: value for name, value in input.items() if name not in unreadable}
    issues: list[FieldIssue] = []
    if model is None:
        _json_problem(input, (), issues)
        return issues
    _check_fields(model, input, issues, unreadable)
    bad = {issue.path[0] for issue in issues if issue.path} | unreadable
    _multi_prompt(model, input, issues, sums=not bad & {"multi_prompt", "duration"})
    return issues


def effective_input(model: ModelInfo, input: Mapping[str, Any]) -> dict[str, Any]:
    """``input`` with the schema's defaults filled in: for display and cost only, never sent."""
    result = dict(input)
    for name, schema in model.properties.items():
        if name not in result and isinstance(schema, Mapping) and "default" in schema:
            result[name] = schema["default"]
    return result


def field_type(model: ModelInfo | None, field: str) -> str | None:
    """The schema type of a top-level field, or None when unknown."""
    if model is None:
        return None
    schema = model.properties.get(field)
    kind = schema.get("type") if isinstance(schema, Mapping) else None
    return kind if isinstance(kind, str) else None


MAX_JSON_DEPTH = 50


def _too_deep(value: Any, limit: int) -> bool:
    """True when ``value`` nests lists/mappings more than ``limit`` levels (checked without recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


#: what a CSV number may look like: ASCII digits only (Python's int() and float() also take
#: ``1_000`` and other scripts' digits, which a spreadsheet cell never means as a number)
_CSV_INTEGER = re.compile(r"[-+]?[0-9]+\Z")
_CSV_NUMBER = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\Z")


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict; a key given twice is a ValueError (JSON would keep the
    last one silently, as YAML manifests refuse to)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def csv_integer(text: str) -> int | None:
    """A CSV cell's whole number (ASCII digits, an optional sign), or None."""
    stripped = text.strip()
    return int(stripped, 10) if _CSV_INTEGER.match(stripped) and len(stripped) <= 100 else None


def coerce_text(model: ModelInfo | None, field: str, text: str) -> object:
    """A CSV cell's text as the typed value the schema wants; ValueError(one line) when it cannot be.

    Fields the schema does not know (and every field of an unknown model) stay strings.
    """
    kind = field_type(model, field)
    stripped = text.strip()
    if kind == "integer":
        whole = csv_integer(stripped)
        if whole is None:
            raise ValueError(f"expected an integer, got {show(text)}")
        return whole
    if kind in ("float", "number"):
        if not _CSV_NUMBER.match(stripped) or len(stripped) > 100:
            raise ValueError(f"expected a number, got {show(text)}")
        number = float(stripped)
        if not math.isfinite(number):
            raise ValueError(f"expected a finite number, got {show(text)}")
        return int(number) if number.is_integer() and "." not in stripped and "e" not in stripped.lower() else number
    if kind == "boolean":
        try:
            return BOOL_WORDS[stripped.casefold()]
        except KeyError:
            raise ValueError(f"expected true/false/yes/no/1/0, got {show(text)}") from None
    if kind in ("array", "object"):
        try:
            value = json.loads(stripped, object_pairs_hook=unique_keys)
        except (ValueError, RecursionError) as error:
            message = getattr(error, "msg", None) or (str(error) if isinstance(error, ValueError) else "invalid JSON")
            raise ValueError(f"expected JSON {_EXPECTED[kind]} ({message}), got {show(text)}") from None
        if not _type_ok(kind, value):
            raise ValueError(f"expected JSON {_EXPECTED[kind]}, got {_kind(value)}")
        if _too_deep(value, MAX_JSON_DEPTH):
            raise ValueError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
        return value
    schema = model.properties.get(field) if model is not None else None
    if isinstance(schema, Mapping) and (isinstance(schema.get("enum"), list) or _is_url_field(field, schema)):
        return stripped  # `a, 16:9` or `a, https://...`: the space is the file's layout, not the value's
    return text  # free text (a prompt) is sent as written
