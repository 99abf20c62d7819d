"""``{name}`` templates: matrix variables in prompts, ids and output file names.

Pure. ``{name}`` is replaced by the variable's value, ``{{`` and ``}}`` stand for literal braces,
anything else with a brace in it is an error the user sees with its location. Compiled templates
are cached, so expanding 100,000 jobs parses each distinct string once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from batchrun.domain import canonical_json

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class TemplateError(ValueError):
    """A template is malformed or names an unknown variable (one-line message)."""


class Var(str):
    """A variable reference inside a compiled template (a str subclass, so parts stay small)."""

    __slots__ = ()


Template = tuple[str, ...]  # literal str parts and Var parts


@lru_cache(maxsize=8192)
def compile_template(text: str) -> Template:
    """Split ``text`` into literal and variable parts; TemplateError when a brace is unbalanced."""
    parts: list[str] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        brace_open = text.find("{", i)
        brace_close = text.find("}", i)
        if brace_open < 0 and brace_close < 0:
            literal.append(text[i:])
            break
        if brace_close >= 0 and (brace_open < 0 or brace_close < brace_open):
            if text.startswith("}}", brace_close):
                literal.append(text[i:brace_close] + "}")
                i = brace_close + 2
                continue
            raise TemplateError(f"unbalanced `}}` at character {brace_close + 1}; write `}}}}` for a literal brace")
        if text.startswith("{{", brace_open):
            literal.append(text[i:brace_open] + "{")
            i = brace_open + 2
            continue
        end = text.find("}", brace_open + 1)
        inner_open = text.find("{", brace_open + 1)
        if end < 0 or (0 <= inner_open < end):
            raise TemplateError(f"unbalanced `{{` at character {brace_open + 1}; write `{{{{` for a literal brace")
        name = text[brace_open + 1:end]
        if not NAME.match(name):
            raise TemplateError(
                f"`{{{name}}}` is not a template variable (letters, digits and _); "
                "write `{{` and `}}` for literal braces"
            )
        literal.append(text[i:brace_open])
        if literal:
            joined = "".join(literal)
            if joined:
                parts.append(joined)
            literal = []
        parts.append(Var(name))
        i = end + 1
    tail = "".join(literal)
    if tail:
        parts.append(tail)
    return tuple(parts)


def names(template: Template) -> list[str]:
    """The variables a compiled template uses, in order."""
    return [str(p) for p in template if isinstance(p, Var)]


def check(text: str, known: Iterable[str]) -> list[str]:
    """Compile ``text`` and return its variable names; TemplateError on syntax or unknown names."""
    used = names(compile_template(text))
    known_set = set(known)
    for name in used:
        if name not in known_set:
            listing = ", ".join(sorted(known_set)) or "none (add a `matrix:` to define some)"
            raise TemplateError(f"unknown template variable `{name}`; known: {listing}")
    return used


def render(template: Template, variables: Mapping[str, str]) -> str:
    """Fill a compiled template; every variable it names must be in ``variables``."""
    if len(template) == 1 and not isinstance(template[0], Var):
        return template[0]
    return "".join(variables[p] if isinstance(p, Var) else p for p in template)


def render_text(text: str, variables: Mapping[str, str]) -> str:
    """Compile (cached) and fill ``text``."""
    return render(compile_template(text), variables)


def needs_render(value: Any) -> bool:
    """True when ``value`` holds a string with a brace anywhere inside it."""
    if isinstance(value, str):
        return "{" in value or "}" in value
    if isinstance(value, dict):
        return any(needs_render(v) for v in value.values())
    if isinstance(value, list):
        return any(needs_render(v) for v in value)
    return False


def render_value(value: Any, variables: Mapping[str, str]) -> Any:
    """``value`` with every string inside it rendered (dicts and lists are copied, not changed)."""
    if isinstance(value, str):
        return render_text(value, variables) if ("{" in value or "}" in value) else value
    if isinstance(value, dict):
        return {k: render_value(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, variables) for v in value]
    return value


def strings(value: Any, path: tuple[str | int, ...] = ()) -> Iterable[tuple[tuple[str | int, ...], str]]:
    """Every string inside ``value`` with its path (for checking templates once per source)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from strings(v, (*path, i))


def as_text(value: Any) -> str:
    """The text a matrix value stands for inside a template."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    return canonical_json(value)
