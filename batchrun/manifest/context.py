"""What every part of one manifest load shares: the parsed document, the options, the problems
found so far, and the checks that any section or job source needs (models, templates, takes).

The loader (``loader.py``) reads the top-level sections through ``sections.py`` and the jobs
through ``sources.py``; both are mixins over ``LoadContext``, so a problem anywhere lands in the
one ``Sink`` with the location of the value that caused it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchrun.catalog import MODELS, ModelInfo, lookup, suggest
from batchrun.errors import Location, Problem
from batchrun.manifest import templates, yamlnodes
from batchrun.manifest.expand import Sink
from batchrun.validation import FieldIssue

#: keys of a job (or CSV columns) that are not input fields
JOB_META = ("id", "model", "takes")


def decode_text(data: bytes, path: str) -> tuple[str | None, Problem | None]:
    """The text of a manifest or CSV file (a UTF-8 BOM dropped), or the problem at its first bad byte."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        return None, Problem(Location(path, line, column), "",
                             f"not UTF-8 text (byte 0x{data[error.start]:02x}); save the file as UTF-8")


_KINDS = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
          dict: "a mapping", type(None): "nothing"}


def kind_of(value: Any) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def field_label(path: tuple[Any, ...]) -> str:
    return FieldIssue(tuple(path), "").field


def escape_at(value: Any, path: tuple[Any, ...]) -> Any:
    """``value`` with the string at ``path`` brace-escaped (so a reported bad template renders as is)."""
    if not path:
        return value.replace("{", "{{").replace("}", "}}") if isinstance(value, str) else value
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        copy[head] = escape_at(value[head], rest)
        return copy
    if isinstance(value, list):
        copy_list = list(value)
        copy_list[head] = escape_at(value[head], rest)
        return copy_list
    return value  # pragma: no cover


class LoadContext:
    """One load: the parsed document, options and the problems found so far."""

    def __init__(self, path: Path, display: str, *, model: str | None, allow_unknown_model: bool,
                 max_jobs: int) -> None:
        self.path = path
        self.display = display
        self.flag_model = model
        self.allow_unknown = allow_unknown_model
        self.max_jobs = max_jobs
        self.sink = Sink(display)
        self.doc: yamlnodes.Document | None = None
        self.matrix_keys: list[str] = []
        self.used: set[str] = set()
        self.template_failed = False  #: set by ``checked``; a job with a broken template is not expanded

    # -- locations ------------------------------------------------------------------------------

    def at(self, path: tuple[Any, ...], *, key: bool = False) -> Location:
        if self.doc is None:
            return Location(self.display, 1, 1)
        return self.doc.locate(path, key=key)

    def problem(self, location: Location, field: str, message: str) -> None:
        self.sink.add(location, field, message)

    # -- values every section and job source checks -----------------------------------------------

    def resolve_model(self, own: Any, own_location: Location, job_location: Location,
                      default: str | None, default_location: Location | None) -> tuple[str, ModelInfo | None] | None:
        if own is not None:
            if not isinstance(own, str) or not own.strip():
                self.problem(own_location, "model", f"must be a model id string (got {kind_of(own)})")
                return None
            model_id, location = own.strip(), own_location
        elif default is not None:
            model_id, location = default, default_location or job_location
        else:
            self.problem(job_location, "model",
                         "no model: pass --model, or set `model:` at the top of the manifest, on the job or in a `model` column")
            return None
        info = lookup(model_id)
        if info is None and not self.allow_unknown:
            hint = suggest(model_id, MODELS)
            extra = f"; did you mean `{hint}`?" if hint else f"; known: {', '.join(MODELS)}"
            self.problem(location, "model",
                         f"unknown model `{model_id}`{extra} (--allow-unknown-model sends it unchecked)")
            return None
        return model_id, info

    def takes_value(self, value: Any, location: Location, label: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.problem(location, label, f"must be a whole number >= 1 (got {kind_of(value)} {value!r})")
            return 1
        return value

    # -- templates ------------------------------------------------------------------------------

    def checked(self, value: Any, locate: Any, prefix: tuple[Any, ...] = ()) -> Any:
        """``value`` with every string's template checked; bad strings are reported and escaped."""
        if not templates.needs_render(value):
            return value
        bad: list[tuple[Any, ...]] = []
        for sub, text in templates.strings(value):
            if "{" not in text and "}" not in text:
                continue
            try:
                self.used.update(templates.check(text, self.matrix_keys))
            except templates.TemplateError as error:
                self.problem(locate(sub), field_label(prefix + sub), str(error))
                bad.append(sub)
                self.note_known_names(text)
                self.template_failed = True
        for sub in bad:
            value = escape_at(value, sub)
        return value

    def note_known_names(self, text: str) -> None:
        """Count the known variables of a template that failed, so they are not called unused."""
        try:
            self.used.update(n for n in templates.names(templates.compile_template(text)) if n in self.matrix_keys)
        except templates.TemplateError:
            pass
