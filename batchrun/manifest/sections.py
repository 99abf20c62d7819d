"""The top-level sections of a YAML manifest: name, model, takes, budget, prices, matrix,
defaults and output. Each reader reports its problems and returns a usable default, so one load
lists every problem at once."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchrun.catalog import suggest
from batchrun.cost import PriceTable
from batchrun.errors import ConfigError, Location
from batchrun.manifest import templates
from batchrun.manifest.context import JOB_META, LoadContext, kind_of
from batchrun.manifest.expand import Matrix, unsafe_campaign_name, value_slug

OUTPUT_KEYS = ("dir", "filename")
FILENAME_VARIABLES = ("id", "take", "key", "campaign", "model")
RESERVED_MATRIX_KEYS = frozenset(FILENAME_VARIABLES + ("takes",))


class SectionReader(LoadContext):
    """Readers of the manifest's top-level values."""

    def text_value(self, top: Mapping[str, Any], key: str) -> str | None:
        value = top.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(self.at((key,)), key, f"must be a non-empty string (got {kind_of(value)})")
            return None
        return value.strip()

    def campaign_name(self, top: Mapping[str, Any]) -> str:
        """The campaign's name (default: the manifest's file name): it names the default output
        folder `<name>-output` and is the `{campaign}` variable, so it must be one safe folder name."""
        name = self.text_value(top, "name")
        if name is None:
            return self.default_name("give the manifest a shorter `name:`")
        why = unsafe_campaign_name(name)
        if why is not None:
            self.problem(self.at(("name",)), "name", f"campaign name {why}")
            return self.path.stem
        return name

    def default_name(self, way_out: str) -> str:
        """The campaign name taken from the file's name, which must fit in its `<name>-output` folder."""
        if len(self.path.stem.encode("utf-8")) > 200:
            self.problem(Location(self.display, None, None), "name",
                         "the campaign name is the file's name, longer than 200 bytes (UTF-8): too long for "
                         f"its `<name>-output` folder; {way_out}")
        return self.path.stem

    def budget_value(self, top: Mapping[str, Any]) -> float | None:
        value = top.get("budget")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            self.problem(self.at(("budget",)), "budget", f"must be a number of USD >= 0 (got {value!r})")
            return None
        return float(value)

    def price_table(self, value: Any, flag: PriceTable | None) -> PriceTable:
        table = PriceTable.default()
        if value is not None:
            if not isinstance(value, dict):
                self.problem(self.at(("prices",)), "prices",
                             "must be a mapping of tier or model id to {silent: USD/s, audio: USD/s}")
            else:
                for key, price in value.items():
                    try:
                        table = table.with_overrides({key: price}, source=self.display)
                    except ConfigError as error:
                        message = error.message.removeprefix(f"{self.display}: ")
                        self.problem(self.at(("prices", key)), "", message)
        return table.overlay(flag) if flag is not None else table

    def matrix_value(self, value: Any) -> Matrix:
        matrix = Matrix()
        if value is None:
            return matrix
        if not isinstance(value, dict) or not value:
            self.problem(self.at(("matrix",)), "matrix",
                         "must be a mapping of variable name to a list of values")
            return matrix
        for key, values in value.items():
            location = self.at(("matrix", key), key=True)
            if not isinstance(key, str) or not templates.NAME.match(key):
                self.problem(location, f"matrix.{key}",
                             f"matrix key `{key}` must be a name of letters, digits and _ (not starting with a digit)")
                continue
            if key in RESERVED_MATRIX_KEYS:
                self.problem(location, f"matrix.{key}", f"`{key}` cannot be a matrix key (it is a built-in "
                             f"variable{'; list one job per model instead' if key == 'model' else ''})")
                continue
            if not isinstance(values, list) or not values:
                self.problem(self.at(("matrix", key)), f"matrix.{key}",
                             f"must be a non-empty list of values (got {kind_of(values)})")
                continue
            empty = [j for j, v in enumerate(values) if v is None]
            if empty:  # `- ` with nothing after it, or `~`: would reach prompts as the word "null"
                self.problem(self.at(("matrix", key, empty[0])), f"matrix.{key}",
                             f"item {empty[0] + 1} is empty; write a value (quote it: \"\" for an empty text)")
                continue
            texts = [self.written(("matrix", key, j), v) for j, v in enumerate(values)]
            matrix.keys.append(key)
            matrix.values.append(list(values))
            matrix.texts.append(texts)
            matrix.slugs.append(_slugs_of(values, texts))
        self.matrix_keys = list(matrix.keys)
        keys = matrix.keys
        matrix.locate = lambda i, j, sub: self.at(("matrix", keys[i], j, *sub))
        return matrix

    def literal_matrix_values(self, matrix: Matrix, i: int) -> None:
        """The values of a matrix key that sets no field (it is only substituted into prompts,
        ids and file names) follow the brace rules of every other string: `{{`/`}}` are literal
        braces, and a `{name}` is refused, since a substituted value is never expanded again."""
        key = matrix.keys[i]
        for j, value in enumerate(matrix.values[i]):
            if not isinstance(value, str) or not templates.needs_render(value):
                continue
            location = matrix.locate(i, j, ())
            try:
                template = templates.compile_template(value)
            except templates.TemplateError as error:
                self.problem(location, f"matrix.{key}", str(error))
                continue
            used = templates.names(template)
            if used:
                self.problem(location, f"matrix.{key}", f"a matrix value cannot use a variable (`{{{used[0]}}}`) "
                             "unless its key is an input field; write `{{` and `}}` for literal braces")
                continue
            matrix.values[i][j] = matrix.texts[i][j] = templates.render(template, {})
        matrix.slugs[i] = _slugs_of(matrix.values[i], matrix.texts[i])

    def written(self, path: tuple[Any, ...], value: Any) -> str:
        """A matrix value's text in prompts and file names: a number as written (``9.90``, ``007``)."""
        as_written = self.doc.as_written(path, value) if self.doc is not None else None
        return as_written if as_written is not None else templates.as_text(value)

    def defaults_value(self, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(self.at(("defaults",)), "defaults",
                         f"must be a mapping of input fields (got {kind_of(value)})")
            return {}
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.problem(self.at(("defaults", key), key=True), "defaults", f"field name `{key}` must be a string")
            elif key in JOB_META:
                where = "on each job" if key == "id" else "at the top level of the manifest (or on a job)"
                self.problem(self.at(("defaults", key), key=True), f"defaults.{key}",
                             f"`{key}` is not an input field; put it {where}")
            else:
                result[key] = self.checked(item, lambda sub, key=key: self.at(("defaults", key, *sub)), (key,))
        return result

    def output_value(self, value: Any, name: str) -> tuple[Path, templates.Template | None, Location | None]:
        directory = Path(os.path.abspath(self.path.parent / f"{name}-output"))
        if value is None:
            return directory, None, None
        if not isinstance(value, dict):
            self.problem(self.at(("output",)), "output", "must be a mapping with `dir` and/or `filename`")
            return directory, None, None
        for key in value:
            if key not in OUTPUT_KEYS:
                hint = suggest(str(key), OUTPUT_KEYS)
                extra = f"; did you mean `{hint}`?" if hint else "; known: dir, filename"
                self.problem(self.at(("output", key), key=True), f"output.{key}", f"unknown key `{key}`{extra}")
        if "dir" in value:
            raw = value["dir"]
            if not isinstance(raw, str) or not raw.strip() or "\0" in raw:
                self.problem(self.at(("output", "dir")), "output.dir", "must be a directory path")
            elif any(len(part.encode("utf-8")) > 255 for part in Path(raw).parts):
                self.problem(self.at(("output", "dir")), "output.dir",
                             "has a folder name longer than 255 bytes (UTF-8); file systems refuse it")
            else:
                directory = Path(os.path.abspath(self.path.parent / os.path.expanduser(raw)))
        template: templates.Template | None = None
        location: Location | None = None
        if "filename" in value:
            raw = value["filename"]
            location = self.at(("output", "filename"))
            if not isinstance(raw, str) or not raw.strip():
                self.problem(location, "output.filename", "must be a file name template")
            else:
                try:
                    self.used.update(templates.check(raw, [*self.matrix_keys, *FILENAME_VARIABLES]))
                    template = templates.compile_template(raw)
                except templates.TemplateError as error:
                    self.problem(location, "output.filename", str(error))
        return directory, template, location


def _slugs_of(values: list[Any], texts: list[str]) -> list[str]:
    """Slugs of one matrix key's values (from the value, not the text as written, so an id made
    before numbers kept their written form stays the same); clashes get a short hash of the text
    as written (so `9.90` and `9.9` still get two ids)."""
    slugs = [value_slug(templates.as_text(v)) for v in values]
    counts: dict[str, int] = {}
    for slug in slugs:
        counts[slug] = counts.get(slug, 0) + 1
    return [f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:4]}" if counts[slug] > 1 else slug
            for slug, text in zip(slugs, texts)]
