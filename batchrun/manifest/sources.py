"""Where jobs come from: the `jobs:` list of a YAML manifest and the rows of a CSV file (named by
`csv:` or loaded on its own). Each becomes a ``Source``: its fields with templates checked, its
model, takes and id template, and how to locate each field for an error message."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchrun.errors import Location
from batchrun.inputfiles import read_input_file
from batchrun.manifest import csvrows, templates
from batchrun.manifest.context import (
    JOB_META,
    LoadContext,
    decode_text,
    kind_of,
)
from batchrun.manifest.expand import Source
from batchrun.validation import coerce_text, csv_integer


class JobSourceReader(LoadContext):
    """Readers of YAML jobs and CSV rows."""

    def yaml_source(self, index: int, job: Any, default_takes: int, default_model: str | None,
                    model_location: Location | None) -> Source | None:
        base = ("jobs", index)
        location = self.at(base)
        if not isinstance(job, dict):
            self.problem(location, f"jobs[{index}]", f"each job must be a mapping of fields (got {kind_of(job)})")
            return None
        resolved = self.resolve_model(job.get("model"), self.at((*base, "model")), location, default_model,
                                      model_location)
        takes = default_takes
        if "takes" in job:
            takes = self.takes_value(job["takes"], self.at((*base, "takes")), "takes")
        id_template, id_location, ok = self.id_value(job, base)
        fields: dict[str, Any] = {}
        self.template_failed = False
        for key, value in job.items():
            if key in JOB_META:
                continue
            if not isinstance(key, str):
                self.problem(self.at((*base, key), key=True), "", f"field name `{key}` must be a string")
                continue
            fields[key] = self.checked(value, lambda sub, key=key: self.at((*base, key, *sub)), (key,))
        if resolved is None or not ok or self.template_failed:
            return None
        return Source(fields=fields, model=resolved[0], info=resolved[1], takes=takes, location=location,
                      locate=lambda p: self.at((*base, *p)), id_template=id_template, id_location=id_location)

    def id_value(self, job: Mapping[str, Any], base: tuple[Any, ...]) -> tuple[templates.Template | None,
                                                                              Location | None, bool]:
        if "id" not in job:
            return None, None, True
        raw = job["id"]
        location = self.at((*base, "id"))
        if isinstance(raw, str) and not raw.strip():
            self.problem(location, "id", "must not be empty")
            return None, location, False
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            self.problem(location, "id", f"must be a string or a number (got {kind_of(raw)})")
            return None, location, False
        if isinstance(raw, (int, float)) and self.doc is not None:
            node = self.doc.node((*base, "id"))
            raw = getattr(node, "value", raw)  # the digits as written: `id: 007` stays 007, `1e3` stays 1e3
        try:
            self.used.update(templates.check(str(raw), self.matrix_keys))
            return templates.compile_template(str(raw)), location, True
        except templates.TemplateError as error:
            self.problem(location, "id", str(error))
            return None, location, False

    def csv_sources(self, csv_path: Path, display: str, where: Location, default_takes: int,
                    default_model: str | None, model_location: Location | None) -> list[Source]:
        data, why = read_input_file(csv_path)
        if data is None:
            self.problem(where, "csv", f"cannot read the CSV file `{display}`: {why}")
            return []
        text, bad = decode_text(data, display)
        del data  # the text is all that is read from here on
        if bad is not None or text is None:
            if bad:
                self.sink.extend([bad])
            return []
        return self.csv_text_sources(text, csv_path, display, default_takes, default_model, model_location)

    def csv_text_sources(self, text: str, csv_path: Path, display: str, default_takes: int,
                         default_model: str | None, model_location: Location | None) -> list[Source]:
        """One source per row of a CSV file's decoded ``text``, read row by row."""
        sources = []

        def take(table: csvrows.Table, row: csvrows.Row) -> None:
            source = self.csv_source(table, row, default_takes, default_model, model_location)
            if source is not None:
                sources.append(source)

        table = csvrows.read_table(text, display, on_row=take, tsv=csv_path.suffix.lower() == ".tsv")
        self.sink.extend_first(table.problems)  # read last, yet kept first when there are too many
        if not table.row_count and not table.problems:
            self.problem(Location(display, table.header_line, 1), "", "the CSV file has no rows (only a header)")
        return sources

    def csv_source(self, table: csvrows.Table, row: csvrows.Row, default_takes: int, default_model: str | None,
                   model_location: Location | None) -> Source | None:
        path = table.path
        location = Location(path, row.line, 1)

        def cell(name: str) -> Location:
            return Location(path, row.line, row.cells[name][1]) if name in row.cells else location

        own_model = row.cells["model"][0].strip() if "model" in row.cells else None
        resolved = self.resolve_model(own_model, cell("model"), location, default_model, model_location)
        info = resolved[1] if resolved else None
        takes = default_takes
        if "takes" in row.cells:
            whole = csv_integer(row.cells["takes"][0])
            if whole is None:
                self.problem(cell("takes"), "takes", f"must be a whole number >= 1 (got `{row.cells['takes'][0]}`)")
            else:
                takes = self.takes_value(whole, cell("takes"), "takes")
        id_template, ok = None, True
        if "id" in row.cells:
            raw = row.cells["id"][0].strip()
            try:
                self.used.update(templates.check(raw, self.matrix_keys))
                id_template = templates.compile_template(raw)
            except templates.TemplateError as error:
                self.problem(cell("id"), "id", str(error))
                ok = False
        fields: dict[str, Any] = {}
        unreadable = set(row.unreadable)
        self.template_failed = False
        for name, (text, column) in row.cells.items():
            if name in JOB_META:
                continue
            here = Location(path, row.line, column)
            try:
                value = coerce_text(info, name, text)
            except ValueError as error:
                self.problem(here, name, str(error))
                unreadable.add(name)
                continue
            fields[name] = self.checked(value, lambda sub, here=here: here, (name,))
        if resolved is None or not ok or self.template_failed:
            return None
        cells = _RowCells(table.path, table.header_line, table.header_columns, row.line)
        return Source(
            fields=fields, model=resolved[0], info=info, takes=takes, location=location,
            locate=cells.locate, id_template=id_template, id_location=cell("id") if "id" in row.cells else None,
            csv=True, field_origin=cells.header, unreadable=frozenset(unreadable),
        )


class _RowCells:
    """Where a CSV row's fields are: a field's cell (its column on the row's line), or its header.

    One per row, kept as long as the campaign: it holds the table's shared column numbers and the
    row's line, never the row itself (whose texts would stay in memory beside the typed values)."""

    __slots__ = ("path", "header_line", "columns", "line")

    def __init__(self, path: str, header_line: int, columns: dict[str, int], line: int) -> None:
        self.path, self.header_line, self.columns, self.line = path, header_line, columns, line

    def locate(self, field_path: tuple[Any, ...]) -> Location:
        return Location(self.path, self.line, self.columns.get(field_path[0], 1) if field_path else 1)

    def header(self, field_path: tuple[Any, ...]) -> Location:
        if not field_path:
            return Location(self.path, self.line, 1)
        return Location(self.path, self.header_line, self.columns.get(field_path[0], 1))
