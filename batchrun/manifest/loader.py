"""Reading one manifest: top-level keys, job sources (YAML jobs, CSV rows), checks, the Plan.

Every problem goes into one ``Sink`` with the location of the value that caused it; the loader
raises a single ManifestError at the end. Only this module reads files (the manifest, its CSV).
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchrun.catalog import MODELS, ModelInfo, lookup, suggest
from batchrun.cost import PriceTable
from batchrun.errors import ConfigError, Location, ManifestError, Problem
from batchrun.manifest import csvrows, templates, yamlnodes
from batchrun.manifest.campaign import Campaign
from batchrun.manifest.expand import Matrix, Plan, Sink, Source, unsafe_campaign_name, value_slug
from batchrun.validation import FieldIssue, coerce_text

TOP_KEYS = ("name", "model", "defaults", "jobs", "matrix", "csv", "takes", "output", "budget", "prices")
JOB_META = ("id", "model", "takes")
OUTPUT_KEYS = ("dir", "filename")
FILENAME_VARIABLES = ("id", "take", "key", "campaign", "model")
RESERVED_MATRIX_KEYS = frozenset(FILENAME_VARIABLES + ("takes",))


def _decode(data: bytes, path: str) -> tuple[str | None, Problem | None]:
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


def _kind(value: Any) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def _label(path: tuple[Any, ...]) -> str:
    return FieldIssue(tuple(path), "").field


class Loader:
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

    # -- models ---------------------------------------------------------------------------------

    def resolve_model(self, own: Any, own_location: Location, job_location: Location,
                      default: str | None, default_location: Location | None) -> tuple[str, ModelInfo | None] | None:
        if own is not None:
            if not isinstance(own, str) or not own.strip():
                self.problem(own_location, "model", f"must be a model id string (got {_kind(own)})")
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
                self.problem(locate(sub), _label(prefix + sub), str(error))
                bad.append(sub)
                self.note_known_names(text)
                self.template_failed = True
        for sub in bad:
            value = _escape_at(value, sub)
        return value

    def note_known_names(self, text: str) -> None:
        """Count the known variables of a template that failed, so they are not called unused."""
        try:
            self.used.update(n for n in templates.names(templates.compile_template(text)) if n in self.matrix_keys)
        except templates.TemplateError:
            pass

    # -- the manifest ---------------------------------------------------------------------------

    def load(self, prices: PriceTable | None) -> Campaign:
        data, why = read_input_file(self.path)
        if data is None:
            raise ManifestError([Problem(Location(self.display), "", f"cannot read the manifest: {why}")])
        text, bad = _decode(data, self.display)
        if bad is not None or text is None:
            raise ManifestError([bad] if bad else [])
        if self.path.suffix.lower() == ".csv":
            return self.load_csv_manifest(text, prices)
        self.doc = doc = yamlnodes.parse(text, self.display)
        self.sink.extend(doc.problems)
        if doc.problems and doc.value is None:
            raise ManifestError(self.sink.problems())
        top = doc.value
        if top is None:
            raise ManifestError([Problem(Location(self.display, 1, 1), "",
                                         "the manifest is empty; it needs at least `model:` and `jobs:`")])
        if not isinstance(top, dict):
            raise ManifestError([Problem(self.at(()), "",
                                         f"the manifest must be a mapping of keys ({', '.join(TOP_KEYS)}), "
                                         f"not {_kind(top)}")])
        for key in top:
            if key not in TOP_KEYS:
                hint = suggest(str(key), TOP_KEYS)
                extra = f"; did you mean `{hint}`?" if hint else f"; known keys: {', '.join(TOP_KEYS)}"
                self.problem(self.at((key,), key=True), str(key), f"unknown key `{key}`{extra}")
        return self.build(top, prices)

    def build(self, top: dict[str, Any], prices: PriceTable | None) -> Campaign:
        name = self.campaign_name(top)
        manifest_model = self.text_value(top, "model")
        default_model = self.flag_model or manifest_model
        model_location = None if self.flag_model else (self.at(("model",)) if manifest_model else None)
        takes = self.takes_value(top.get("takes", 1), self.at(("takes",)), "takes")
        budget = self.budget_value(top)
        table = self.price_table(top.get("prices"), prices)
        self.matrix_keys = []
        matrix = self.matrix_value(top.get("matrix"))
        defaults = self.defaults_value(top.get("defaults"))
        output_dir, filename, filename_location = self.output_value(top.get("output"), name)

        sources: list[Source] = []
        jobs = top.get("jobs")
        if jobs is not None:
            if not isinstance(jobs, list):
                self.problem(self.at(("jobs",)), "jobs", f"must be a list of jobs (got {_kind(jobs)})")
            elif not jobs and "csv" not in top:
                self.problem(self.at(("jobs",)), "jobs", "is empty; add at least one job")
            else:
                for index, job in enumerate(jobs):
                    source = self.yaml_source(index, job, takes, default_model, model_location)
                    if source is not None:
                        sources.append(source)
        if "csv" in top:
            csv_name = top["csv"]
            if not isinstance(csv_name, str) or not csv_name.strip() or "\0" in csv_name:
                self.problem(self.at(("csv",)), "csv", "must be the path of a CSV file, relative to the manifest")
            else:
                csv_path = self.path.parent / csv_name
                display = os.path.normpath(os.path.join(os.path.dirname(self.display), csv_name))
                sources.extend(self.csv_sources(csv_path, display, self.at(("csv",)), takes, default_model,
                                                model_location))
        if jobs is None and "csv" not in top:
            if "matrix" in top:
                location = self.at(("matrix", matrix.keys[0]), key=True) if matrix.keys else self.at(("matrix",))
                resolved = self.resolve_model(None, location, location, default_model, model_location)
                if resolved is not None:
                    sources.append(Source(fields={}, model=resolved[0], info=resolved[1], takes=takes,
                                          location=location, locate=lambda p: self.at(("defaults", *p))))
            else:
                self.problem(self.at(()), "jobs", "no jobs: add `jobs:`, `csv:` or a `matrix:` over `defaults:`")
        return self.finish(name, matrix, defaults, sources, output_dir, filename, filename_location,
                           budget, table)

    def finish(self, name: str, matrix: Matrix, defaults: dict[str, Any], sources: list[Source],
               output_dir: Path, filename: templates.Template | None, filename_location: Location | None,
               budget: float | None, table: PriceTable) -> Campaign:
        # matrix values that set fields may hold templates too; a key must be a field or be used
        field_keys = {k for s in sources if s.info for k in self.matrix_keys if k in s.info.properties}
        for i, key in enumerate(matrix.keys):
            if key in field_keys:
                for j, value in enumerate(matrix.values[i]):
                    matrix.values[i][j] = self.checked(value, lambda sub, i=i, j=j: matrix.locate(i, j, sub),
                                                       (key,))
            else:
                self.literal_matrix_values(matrix, i)
        if sources and all(s.info is not None for s in sources):
            for key in matrix.keys:
                if key not in field_keys and key not in self.used:
                    models = sorted({s.model for s in sources})
                    props = {p for s in sources if s.info for p in s.info.properties}
                    hint = suggest(key, props)
                    extra = f"; did you mean `{hint}`?" if hint else ""
                    self.problem(self.at(("matrix", key), key=True), f"matrix.{key}",
                                 f"`{key}` is not a field of {', '.join(models)} and no prompt, id or filename "
                                 f"uses `{{{key}}}`{extra}")
        self.check_matrix_fields_apply(matrix, field_keys, sources)
        self.check_priced_models(table, sources)
        size = matrix.size
        total = sum(s.takes for s in sources) * size
        if total > self.max_jobs:
            where = self.at(("matrix",), key=True) if matrix.keys else self.at(("jobs",), key=True)
            self.problem(where, "matrix" if matrix.keys else "jobs",
                         f"expands to {total:,} jobs, more than the cap of {self.max_jobs:,} (--max-jobs)")
            raise ManifestError(self.sink.problems())
        plan = Plan(campaign=name, defaults=defaults, locate_default=lambda p: self.at(("defaults", *p)),
                    matrix=matrix, sources=sources, filename=filename, filename_location=filename_location)
        plan.check(self.sink)  # a broken default was escaped: jobs are still checked, once each
        problems = self.sink.problems()
        if problems:
            raise ManifestError(problems)
        self.doc = None  # the nodes are only needed for locating problems
        return Campaign(name=name, manifest_path=Path(os.path.abspath(self.path)), output_dir=output_dir,
                        budget=budget, prices=table, job_count=total, _plan=plan)

    def check_matrix_fields_apply(self, matrix: Matrix, field_keys: set[str], sources: list[Source]) -> None:
        """A matrix key that sets a field of some jobs' model but not of this job's (and that no
        template uses) would be dropped for it: its values would make identical, paid-for jobs."""
        for key, values in zip(matrix.keys, matrix.values, strict=True):
            if key not in field_keys or key in self.used or len(values) < 2:
                continue
            for source in sources:
                if source.info is not None and key not in source.info.properties:
                    self.problem(source.location, f"matrix.{key}",
                                 f"`{key}` is not a field of {source.model}, so its {len(values)} values would "
                                 f"make identical jobs; give this job its own manifest or a model that has `{key}`")

    def check_priced_models(self, table: PriceTable, sources: list[Source]) -> None:
        """A price for a model id that is neither in the catalog nor used by a job is a typo: it would
        be ignored, and the estimate and the budget would use the tier's price instead."""
        used = {s.model for s in sources}
        written = self.doc.value.get("prices") if self.doc is not None and isinstance(self.doc.value, dict) else None
        for key in sorted(table.overridden_models()):
            if key in used or lookup(key) is not None:
                continue
            hint = suggest(key, [*MODELS, *used])
            extra = f"; did you mean `{hint}`?" if hint else ""
            if isinstance(written, dict) and key in written:
                where = self.at(("prices", key), key=True)
            else:
                where = Location("--prices", None, None)
            self.problem(where, f"prices.{key}", f"no job uses the model `{key}` and it is not a known model id{extra}")

    # -- top-level values -------------------------------------------------------------------------

    def text_value(self, top: Mapping[str, Any], key: str) -> str | None:
        value = top.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(self.at((key,)), key, f"must be a non-empty string (got {_kind(value)})")
            return None
        return value.strip()

    def campaign_name(self, top: Mapping[str, Any]) -> str:
        """The campaign's name (default: the manifest's file name): it names the default output
        folder `<name>-output` and is the `{campaign}` variable, so it must be one safe folder name."""
        name = self.text_value(top, "name")
        if name is None:
            return self.path.stem
        why = unsafe_campaign_name(name)
        if why is not None:
            self.problem(self.at(("name",)), "name", f"campaign name {why}")
            return self.path.stem
        return name

    def takes_value(self, value: Any, location: Location, label: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.problem(location, label, f"must be a whole number >= 1 (got {_kind(value)} {value!r})")
            return 1
        return value

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
                             f"must be a non-empty list of values (got {_kind(values)})")
                continue
            texts = [templates.as_text(v) for v in values]
            matrix.keys.append(key)
            matrix.values.append(list(values))
            matrix.texts.append(texts)
            matrix.slugs.append(_distinct_slugs(texts))
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
        matrix.slugs[i] = _distinct_slugs(matrix.texts[i])

    def defaults_value(self, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(self.at(("defaults",)), "defaults",
                         f"must be a mapping of input fields (got {_kind(value)})")
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

    # -- job sources ----------------------------------------------------------------------------

    def yaml_source(self, index: int, job: Any, default_takes: int, default_model: str | None,
                    model_location: Location | None) -> Source | None:
        base = ("jobs", index)
        location = self.at(base)
        if not isinstance(job, dict):
            self.problem(location, f"jobs[{index}]", f"each job must be a mapping of fields (got {_kind(job)})")
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
            self.problem(location, "id", f"must be a string or a number (got {_kind(raw)})")
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
        text, bad = _decode(data, display)
        if bad is not None or text is None:
            if bad:
                self.sink.extend([bad])
            return []
        table = csvrows.read_table(text, display)
        self.sink.extend(table.problems)
        if not table.rows and not table.problems:
            self.problem(Location(display, table.header_line, 1), "", "the CSV file has no rows (only a header)")
        sources = []
        for row in table.rows:
            source = self.csv_source(table, row, default_takes, default_model, model_location)
            if source is not None:
                sources.append(source)
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
            try:
                takes = self.takes_value(int(row.cells["takes"][0].strip()), cell("takes"), "takes")
            except ValueError:
                self.problem(cell("takes"), "takes", f"must be a whole number >= 1 (got `{row.cells['takes'][0]}`)")
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
        unreadable: set[str] = set()
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
        columns = {name: column for name, (_, column) in row.cells.items()}
        return Source(
            fields=fields, model=resolved[0], info=info, takes=takes, location=location,
            locate=lambda p: Location(path, row.line, columns.get(p[0], 1)) if p else location,
            id_template=id_template, id_location=cell("id") if "id" in row.cells else None, csv=True,
            field_origin=lambda p: table.header_location(p[0]) if p else location,
            unreadable=frozenset(unreadable),
        )

    def load_csv_manifest(self, text: str, prices: PriceTable | None) -> Campaign:
        name = self.path.stem
        table = prices or PriceTable.default()
        sources = self.csv_sources(self.path, self.display, Location(self.display, 1, 1), 1, self.flag_model, None)
        directory = Path(os.path.abspath(self.path.parent / f"{name}-output"))
        return self.finish(name, Matrix(), {}, sources, directory, None, None, None, table)


#: the largest manifest or CSV file read (a CSV of a million jobs is a few hundred MB)
MAX_INPUT_BYTES = 1 << 30


def read_input_file(path: Path) -> tuple[bytes | None, str]:
    """A manifest or CSV file's bytes, or None and why not: only regular files of a sane size are
    read (``/dev/zero`` would fill memory, a FIFO would wait forever)."""
    try:
        with open(path, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NONBLOCK)) as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                return None, "not a regular file"
            if info.st_size > MAX_INPUT_BYTES:
                return None, f"larger than {MAX_INPUT_BYTES >> 20:,} MB"
            return handle.read(MAX_INPUT_BYTES + 1), ""
    except OSError as error:
        return None, error.strerror or str(error)
    except ValueError:  # an embedded NUL character in the path
        return None, "the path contains a NUL character"


def _distinct_slugs(texts: list[str]) -> list[str]:
    """Slugs of one matrix key's values; values whose slugs clash get a short hash of their text."""
    slugs = [value_slug(t) for t in texts]
    counts: dict[str, int] = {}
    for slug in slugs:
        counts[slug] = counts.get(slug, 0) + 1
    return [f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:4]}" if counts[slug] > 1 else slug
            for slug, text in zip(slugs, texts)]


def _escape_at(value: Any, path: tuple[Any, ...]) -> Any:
    """``value`` with the string at ``path`` brace-escaped (so a reported bad template renders as is)."""
    if not path:
        return value.replace("{", "{{").replace("}", "}}") if isinstance(value, str) else value
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        copy[head] = _escape_at(value[head], rest)
        return copy
    if isinstance(value, list):
        copy_list = list(value)
        copy_list[head] = _escape_at(value[head], rest)
        return copy_list
    return value  # pragma: no cover


def load_campaign(path: Path | str, *, model: str | None = None, allow_unknown_model: bool = False,
                  max_jobs: int = 1_000_000, prices: PriceTable | None = None) -> Campaign:
    """Parse, expand and validate a manifest; ManifestError lists every problem at once.

    ``model`` (--model) replaces the manifest's top-level model (a job's own ``model`` still
    wins) and is required for a bare CSV without a ``model`` column. ``prices`` (--prices FILE)
    goes on top of the manifest's ``prices:``.
    """
    display = str(path)
    loader = Loader(Path(path), display, model=model.strip() if isinstance(model, str) and model.strip() else None,
                     allow_unknown_model=allow_unknown_model, max_jobs=max_jobs)
    return loader.load(prices)
