"""Reading one manifest: top-level keys, job sources (YAML jobs, CSV rows), checks, the Plan.

Every problem goes into one ``Sink`` with the location of the value that caused it; the loader
raises a single ManifestError at the end. Only the manifest package reads files (the manifest,
its CSV): ``context.py`` holds what a load shares, ``sections.py`` reads the top-level keys,
``sources.py`` the jobs and CSV rows, and this module puts them together.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from batchrun.catalog import MODELS, lookup, suggest
from batchrun.cost import PriceTable
from batchrun.errors import Location, ManifestError, Problem
from batchrun.manifest import templates, yamlnodes
from batchrun.manifest.campaign import Campaign
from batchrun.inputfiles import read_input_file
from batchrun.manifest.context import decode_text, kind_of
from batchrun.manifest.expand import Matrix, Plan, Source
from batchrun.manifest.sections import SectionReader
from batchrun.manifest.sources import JobSourceReader

TOP_KEYS = ("name", "model", "defaults", "jobs", "matrix", "csv", "takes", "output", "budget", "prices")


class Loader(SectionReader, JobSourceReader):
    """One load of a manifest (YAML, or a bare CSV), from its bytes to a checked Campaign."""

    def load(self, prices: PriceTable | None) -> Campaign:
        data, why = read_input_file(self.path)
        if data is None:
            raise ManifestError([Problem(Location(self.display), "", f"cannot read the manifest: {why}")])
        text, bad = decode_text(data, self.display)
        if bad is not None or text is None:
            raise ManifestError([bad] if bad else [])
        del data  # the text is all that is read from here on
        if self.path.suffix.lower() in (".csv", ".tsv"):
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
                                         f"not {kind_of(top)}")])
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
                self.problem(self.at(("jobs",)), "jobs", f"must be a list of jobs (got {kind_of(jobs)})")
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
            if "jobs" in top:  # `jobs:` written with nothing under it (or `jobs: ~`), matrix or not:
                # a list the user meant to fill, never "run the matrix over the defaults alone"
                hint = " (or remove `jobs:` to run the matrix over `defaults` alone)" if "matrix" in top else ""
                self.problem(self.at(("jobs",), key=True), "jobs", f"is empty; add at least one job{hint}")
            elif "matrix" in top:
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
        identical = self.check_matrix_fields_apply(matrix, field_keys, sources)
        self.check_priced_models(table, sources)
        size = matrix.size
        total = sum(s.takes for s in sources) * size
        if total > self.max_jobs:
            where = self.at(("matrix",), key=True) if matrix.keys else self.at(("jobs",), key=True)
            self.problem(where, "matrix" if matrix.keys else "jobs",
                         f"expands to {total:,} jobs, more than the cap of {self.max_jobs:,} (--max-jobs)")
            raise ManifestError(self.sink.problems())
        plan = Plan(campaign=name, defaults=defaults, locate_default=lambda p: self.at(("defaults", *p)),
                    matrix=matrix, sources=sources, filename=filename, filename_location=filename_location,
                    identical_reported=identical)
        plan.check(self.sink)  # a broken default was escaped: jobs are still checked, once each
        problems = self.sink.problems()
        if problems:
            raise ManifestError(problems)
        self.doc = None  # the nodes are only needed for locating problems
        return Campaign(name=name, manifest_path=Path(os.path.abspath(self.path)), output_dir=output_dir,
                        budget=budget, prices=table, job_count=total, _plan=plan)

    def check_matrix_fields_apply(self, matrix: Matrix, field_keys: set[str], sources: list[Source]) -> set[Location]:
        """A matrix key that sets a field of some jobs' model but not of this job's (and that no
        template uses) would be dropped for it: its values would make identical, paid-for jobs.
        Returns the locations of the jobs reported."""
        reported: set[Location] = set()
        for key, values in zip(matrix.keys, matrix.values, strict=True):
            if key not in field_keys or key in self.used or len(values) < 2:
                continue
            for source in sources:
                if source.info is not None and key not in source.info.properties:
                    self.problem(source.location, f"matrix.{key}",
                                 f"`{key}` is not a field of {source.model}, so its {len(values)} values would "
                                 f"make identical jobs; give this job its own manifest or a model that has `{key}`")
                    reported.add(source.location)
        return reported

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

    def load_csv_manifest(self, text: str, prices: PriceTable | None) -> Campaign:
        name = self.default_name("give the file a shorter name")
        table = prices or PriceTable.default()
        sources = self.csv_text_sources(text, self.path, self.display, 1, self.flag_model, None)
        directory = Path(os.path.abspath(self.path.parent / f"{name}-output"))
        return self.finish(name, Matrix(), {}, sources, directory, None, None, None, table)


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
