"""Expansion: job sources x matrix combinations x takes -> JobSpecs with stable keys.

Pure. A ``Plan`` holds what the manifest said (sources, defaults, matrix, filename template),
already checked structurally. ``Plan.walk`` generates the jobs lazily, in a deterministic
order, so 100,000 jobs are never held in memory at once; the loader walks once with
``check=True`` (validation, duplicate keys and file names) and ``Campaign.jobs()`` walks again.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from batchrun.catalog import ModelInfo
from batchrun.domain import JobSpec, fingerprint
from batchrun.errors import Location, Problem
from batchrun.manifest import templates
from batchrun.validation import effective_input, validate_input

ID_PATTERN = re.compile(r"[A-Za-z0-9._-]+\Z")
MAX_PROBLEMS = 1000
RESERVED_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"COM{i}" for i in range(1, 10)] + [f"LPT{i}" for i in range(1, 10)]
)
_PATH_UNSAFE = str.maketrans({c: "-" for c in '/\\*?"<>|'} | {":": "x"})

Locator = Callable[[tuple[Any, ...]], Location]


class Sink:
    """Collects problems, dropping repeats, up to ``MAX_PROBLEMS`` distinct ones."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.seen: dict[tuple[Location, str, str], None] = {}
        self.truncated = False

    @property
    def full(self) -> bool:
        return len(self.seen) >= MAX_PROBLEMS

    def add(self, location: Location, field: str, message: str) -> None:
        key = (location, field, message)
        if key in self.seen:
            return
        if self.full:
            self.truncated = True
            return
        self.seen[key] = None

    def extend(self, problems: list[Problem]) -> None:
        for p in problems:
            self.add(p.location, p.field, p.message)

    def extend_first(self, problems: list[Problem]) -> None:
        """Add ``problems`` ahead of those already collected, which the cap drops first: a CSV's
        structure problems (a quote never closed) explain the row problems read before them."""
        earlier, truncated = list(self.seen), self.truncated
        self.seen, self.truncated = {}, False
        self.extend(problems)
        for key in earlier:
            self.add(*key)
        self.truncated = self.truncated or truncated

    def problems(self) -> list[Problem]:
        found = [Problem(*key) for key in self.seen]
        if self.truncated:
            found.append(Problem(Location(self.path), "",
                                 f"showing the first {MAX_PROBLEMS} problems; more not shown (fix these first)"))
        return found


@dataclass(slots=True)
class Source:
    """One job as written: a ``jobs:`` entry, a CSV row, or (matrix without jobs) the defaults."""

    fields: dict[str, Any]  #: input fields only
    model: str
    info: ModelInfo | None
    takes: int
    location: Location
    locate: Locator  #: field path -> most specific location in this source
    id_template: templates.Template | None = None
    id_location: Location | None = None
    csv: bool = False
    field_origin: Locator | None = None  #: for CSV: header location of a column (unknown fields)
    #: fields whose cell could not be read (already reported); the job is invalid, and rules that
    #: depend on them are not checked (they would judge a value the user never wrote)
    unreadable: frozenset[str] = frozenset()


@dataclass
class Matrix:
    """The matrix: keys in order, each with its values, their text and their slugs."""

    keys: list[str] = field(default_factory=list)
    values: list[list[Any]] = field(default_factory=list)
    texts: list[list[str]] = field(default_factory=list)
    slugs: list[list[str]] = field(default_factory=list)
    locate: Callable[[int, int, tuple[Any, ...]], Location] | None = None

    @property
    def size(self) -> int:
        size = 1
        for values in self.values:
            size *= len(values)
        return size

    def combinations(self) -> Iterator[tuple[int, ...]]:
        return itertools.product(*(range(len(v)) for v in self.values))


@dataclass
class Plan:
    """Everything needed to generate the campaign's jobs."""

    campaign: str
    defaults: dict[str, Any]
    locate_default: Locator
    matrix: Matrix
    sources: list[Source]
    filename: templates.Template | None
    filename_location: Location | None
    #: (source index, combination index) -> base id, where a short hash collided (rare)
    overrides: dict[tuple[int, int], str] = field(default_factory=dict)
    #: jobs already reported for making identical jobs across the matrix: told once each
    identical_reported: set[Location] = field(default_factory=set)
    #: jobs already reported for an id template that repeats across the matrix: told once each
    id_repeats_reported: set[Location] = field(default_factory=set)
    _unsafe_seen: set[tuple[Location, str]] = field(default_factory=set, repr=False)

    def walk(self, sink: Sink | None = None) -> Iterator[JobSpec]:
        """Every job in order (with ``sink``: check instead, yielding nothing)."""
        matrix = self.matrix
        keys = matrix.keys
        size = matrix.size
        seen_ids: dict[str, tuple[Location, str | None]] = {}
        seen_inputs: dict[str, tuple[Location, tuple[int, ...], bool]] = {}  #: fingerprint -> first job
        seen_names: dict[str, Location] = {}
        for s_index, source in enumerate(self.sources):
            props = source.info.properties if source.info else {}
            field_keys = [i for i, k in enumerate(keys) if k in props]
            base = {**self.defaults, **source.fields}
            static_render = [k for k, v in base.items() if templates.needs_render(v)
                             and k not in {keys[i] for i in field_keys}]
            suffix = bool(size > 1 and source.id_template is not None
                          and not set(templates.names(source.id_template)) & set(keys))
            for c_index, combo in enumerate(matrix.combinations()):
                variables = {k: matrix.texts[i][combo[i]] for i, k in enumerate(keys)}
                data = dict(base)
                rendered: dict[str, str] = {}
                for i in field_keys:
                    value = matrix.values[i][combo[i]]
                    if templates.needs_render(value):
                        value = templates.render_value(value, variables)
                        if isinstance(value, str):  # `{prompt}` elsewhere means the prompt as sent
                            rendered[keys[i]] = value
                    data[keys[i]] = value
                variables.update(rendered)
                for name in static_render:
                    data[name] = templates.render_value(data[name], variables)
                if sink is not None:
                    if sink.full:
                        sink.truncated = True
                        continue
                    invalid = self._validate(source, data, field_keys, combo, sink)
                    if invalid and source.id_template is None:
                        continue  # an invalid job's derived key and file name would only add noise
                # the checking walk fingerprints every job: two jobs with the same model and input
                # would pay twice for one generation, whatever their ids
                fp = fingerprint(source.model, data) if sink is not None else None
                if source.id_template is not None:
                    slugs = {k: matrix.slugs[i][combo[i]] for i, k in enumerate(keys)}  # ids use slugged values
                    base_id = templates.render(source.id_template, slugs)
                    if suffix:
                        base_id += "-" + "-".join(matrix.slugs[i][combo[i]] for i in range(len(keys)))
                else:
                    fp = fingerprint(source.model, data)
                    base_id = self.overrides.get((s_index, c_index)) or f"{prompt_slug(data.get('prompt'))}-{fp[:8]}"
                unique = True
                if sink is not None:
                    assert fp is not None
                    # compared as sent: a field written out at its schema default is the same request
                    sent = fingerprint(source.model, effective_input(source.info, data)) if source.info else fp
                    # an invalid job's input is not compared (its problem is told); its id is still taken
                    unique = invalid or self._check_input(source, sent, combo, seen_inputs, sink)
                    if unique:
                        base_id, unique = self._check_id(source, base_id, fp, s_index, c_index, seen_ids, sink, data)
                    if invalid:
                        continue  # its id is taken (a later duplicate is still reported); nothing more to check
                if fp is None:
                    fp = fingerprint(source.model, data)
                model_text = source.model.replace("/", "_")
                for take in range(1, source.takes + 1):
                    key = f"{base_id}-t{take}"
                    if self.filename is not None:
                        name_vars = {k: v.translate(_PATH_UNSAFE) for k, v in variables.items()}
                        name_vars.update(id=base_id, take=str(take), key=key, campaign=self.campaign,
                                         model=model_text)
                        name = templates.render(self.filename, name_vars)
                    else:
                        name = f"{base_id}.mp4" if source.takes == 1 else f"{base_id}-t{take}.mp4"
                    if sink is not None:
                        if unique:  # a duplicate job's file names would only repeat its problem
                            self._check_name(source, name, seen_names, sink)
                        continue
                    yield JobSpec(
                        key=key,
                        model=source.model,
                        input=data,
                        take=take,
                        output_name=name,
                        location=source.location,
                        user_id=base_id if source.id_template is not None else None,
                        variables=variables,
                        fingerprint=fp or "",
                    )

    def check(self, sink: Sink) -> None:
        """Walk every job once, validating inputs and checking keys and file names into ``sink``."""
        for _ in self.walk(sink):
            pass  # pragma: no cover - the checking walk yields nothing

    # -- checks (only on the loader's walk) ---------------------------------------------------

    def _validate(self, source: Source, data: dict[str, Any], field_keys: list[int],
                  combo: tuple[int, ...], sink: Sink) -> bool:
        """Report the input's problems; True when there were any (or a field could not be read)."""
        issues = validate_input(source.info, data, source.unreadable)
        if not issues:
            return bool(source.unreadable)
        matrix_fields = {self.matrix.keys[i]: i for i in field_keys}
        for issue in issues:
            location = self._issue_location(source, issue.path, issue.message, matrix_fields, combo)
            sink.add(location, issue.field, issue.message)
        return True

    def _issue_location(self, source: Source, path: tuple[Any, ...], message: str,
                        matrix_fields: Mapping[str, int], combo: tuple[int, ...]) -> Location:
        if not path:
            return source.location
        top = path[0]
        if top in matrix_fields and self.matrix.locate is not None:
            i = matrix_fields[top]
            return self.matrix.locate(i, combo[i], path[1:])
        if top in source.fields:
            if source.csv and source.field_origin is not None and message.startswith("unknown field"):
                return source.field_origin(path)
            return source.locate(path)
        if top in self.defaults:
            return self.locate_default(path)
        return source.location

    def _check_input(self, source: Source, fp: str, combo: tuple[int, ...],
                     seen: dict[str, tuple[Location, tuple[int, ...], bool]], sink: Sink) -> bool:
        """False (and a problem) when an earlier job has the same model and input: a job written twice,
        or a job the matrix repeats because no key reaches its input. Two jobs that both have an id
        of their own are two jobs asked for (an exported campaign's takes are such rows)."""
        named = source.id_template is not None
        if fp not in seen:
            seen[fp] = (source.location, combo, named)
            return True
        other, other_combo, other_named = seen[fp]
        if other != source.location:
            if named and other_named:
                return True
            sink.add(source.location, "", f"duplicate job (same model and input as {_where(other, source.location)}); "
                     "use takes: 2 for several generations")
            return False
        if source.location in self.identical_reported:
            return False
        self.identical_reported.add(source.location)
        matrix = self.matrix
        differ = [i for i, (a, b) in enumerate(zip(other_combo, combo, strict=True)) if a != b]
        values = " and ".join(", ".join(f"{matrix.keys[i]}={matrix.texts[i][c[i]]}" for i in differ)
                              for c in (other_combo, combo))
        if all(matrix.texts[i][other_combo[i]] == matrix.texts[i][combo[i]] for i in differ):
            hint = "these values read the same: make them differ or drop one"
        else:
            used = ", ".join("`{" + matrix.keys[i] + "}`" for i in differ)
            hint = f"use {used} in its prompt (or an input field), or takes: N for several generations"
        sink.add(source.location, "", f"this job gets the same model and input for matrix {values}; {hint}")
        return False

    def _check_id(self, source: Source, base_id: str, fp: str, s_index: int, c_index: int,
                  seen: dict[str, tuple[Location, str | None]], sink: Sink,
                  data: Mapping[str, Any]) -> tuple[str, bool]:
        """The job's id (a longer derived one if a short hash collided), and whether it is free."""
        explicit = source.id_template is not None
        if explicit and not ID_PATTERN.match(base_id):
            sink.add(source.id_location or source.location, "id",
                     f"id `{base_id}` may only use ASCII letters, digits, `.`, `_` and `-`")
            return base_id, False
        folded = file_system_name(base_id)
        if folded in seen:
            other, other_fp = seen[folded]
            if not explicit and other_fp is not None:
                # two different jobs share a short hash: give this one a longer one (stable: order is fixed)
                longer = f"{prompt_slug(data.get('prompt'))}-{fp[:16]}"
                self.overrides[(s_index, c_index)] = longer
                seen[file_system_name(longer)] = (source.location, fp)
                return longer, True
            if explicit and other == source.location and self.matrix.keys:  # the id template repeats itself
                if source.location not in self.id_repeats_reported:
                    self.id_repeats_reported.add(source.location)
                    named = set(templates.names(source.id_template)) if source.id_template else set()
                    missing = ", ".join(f"`{{{k}}}`" for k in self.matrix.keys if k not in named)
                    sink.add(source.id_location or source.location, "id",
                             f"the id gives several matrix combinations the same id `{base_id}`; "
                             f"use {missing} in it too")
                return base_id, False
            sink.add(source.id_location or source.location, "id",
                     f"duplicate id `{base_id}` (also {_where(other, source.location)})")
            return base_id, False
        seen[folded] = (source.location, None if explicit else fp)
        return base_id, True

    def _check_name(self, source: Source, name: str, seen: dict[str, Location], sink: Sink) -> None:
        where = self.filename_location or source.location
        problem = unsafe_name(name)
        if problem:
            if (where, problem) not in self._unsafe_seen:  # one line per template and kind of mistake
                self._unsafe_seen.add((where, problem))
                sink.add(where, "output.filename", f"output file `{name[:80]}` {problem}")
            return
        folded = file_system_name(name)
        other = seen.get(folded)
        if other is not None:
            sink.add(source.location, "output.filename",
                     f"output file `{name}` is also written by the job at {_where(other, source.location)}")
            return
        seen[folded] = source.location


def _where(other: Location, here: Location) -> str:
    if other.path == here.path and other.line is not None:
        return f"line {other.line}"
    return str(other)


def file_system_name(name: str) -> str:
    """What a file system that ignores case and Unicode normalization (macOS, Windows) sees of a
    name: `Café` typed (NFC) and `Café` pasted from a Mac (NFD) are one file there."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())


@lru_cache(maxsize=4096)
def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_WORD = re.compile(r"[a-z0-9]+")


@lru_cache(maxsize=4096)
def _slug_of_prompt(prompt: str) -> str:
    words = _WORD.findall(_ascii(prompt[:400]))
    slug = ""
    for word in words[:3]:
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > 24:
            if not slug:
                slug = word[:24]
            break
        slug = candidate
    return slug or "job"


def prompt_slug(prompt: Any) -> str:
    """The first two or three ASCII words of the prompt, lowercased and joined by ``-``."""
    return _slug_of_prompt(prompt) if isinstance(prompt, str) else "job"


def value_slug(text: str) -> str:
    """A matrix value as it appears in an id: ``16:9`` -> ``16x9``, ``Film Noir`` -> ``film-noir``."""
    folded = _ascii(text).replace(":", "x")
    slug = re.sub(r"[^a-z0-9.]+", "-", folded).strip("-.")[:24].strip("-.")
    return slug or "v"


def unsafe_campaign_name(name: str) -> str | None:
    """Why ``name`` cannot name a campaign (it names the folder `<name>-output` and is the
    `{campaign}` variable of file names), or None when it can."""
    if len(name.encode("utf-8")) > 200:
        return "is longer than 200 bytes (UTF-8); file systems refuse longer folder names"
    if _CONTROL.search(name):
        return "contains a control character"
    if "/" in name or "\\" in name:
        return "contains `/` or `\\`; a campaign name is one folder name"
    if name in (".", ".."):
        return f"cannot be `{name}`"
    return None


def unsafe_name(name: str) -> str | None:
    """Why ``name`` is not a safe relative file path, or None when it is."""
    if not name:
        return "is empty"
    if len(name) > 200:
        return "is longer than 200 characters in all (folders included)"
    if any(len(part.encode("utf-8")) > 200 for part in name.split("/")):
        # file systems allow 255 bytes per name, and batchrun adds `.json.part`, `.rev2`, `~2`
        return "has a file or folder name longer than 200 bytes (UTF-8); file systems refuse it"
    if _CONTROL.search(name):
        return "contains a control character"
    if "\\" in name:
        return "contains a backslash; use `/` between folders"
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "must be a relative path"
    for segment in name.split("/"):
        if segment == "..":
            return "must not contain `..`"
        if segment == ".":
            return "has a `.` folder (`./`); write the path without it"
        if segment == "":
            return "has an empty path segment (`//`, or `/` at the end)"
        if segment[-1] in ". ":
            return "must not end a name with a dot or space"
        if segment.split(".")[0].rstrip().upper() in RESERVED_NAMES:
            return f"uses `{segment}`, a name Windows reserves"
    if name.casefold().endswith(RESERVED_SUFFIXES):
        # another job's `<name>.json` sidecar or `<name>.part` download would overwrite this file
        return "ends in `.json` or `.part`, which batchrun keeps for sidecars and partial downloads"
    return None


#: what batchrun appends to a video's name for its own files beside it
RESERVED_SUFFIXES = (".json", ".part")
