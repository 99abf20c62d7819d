"""Manifest problems: every mistake is a ManifestError with located, readable, one-line problems."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from batchrun.errors import ManifestError
from batchrun.manifest import load_campaign

T2V = "kling/kling-3.0/pro/text-to-video"
CORPUS = Path(__file__).resolve().parent.parent / "data" / "bad_manifests"
EXPECTED = yaml.safe_load((CORPUS / "expected.yaml").read_text(encoding="utf-8"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def lines(path: Path, **options: object) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_campaign(path, **options)  # type: ignore[arg-type]
    return caught.value.lines()


def test_corpus_is_large_enough() -> None:
    """The corpus covers at least 40 malformed manifests and every file has an expectation."""
    files = sorted(p.name for p in CORPUS.iterdir() if p.name != "expected.yaml")
    assert len(files) >= 40
    assert files == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus(name: str) -> None:
    """Each malformed manifest fails with ManifestError whose first problem names file, line and cause."""
    path = CORPUS / name
    with pytest.raises(ManifestError) as caught:
        load_campaign(path, model=T2V if name.endswith(".csv") else None)
    problems = caught.value.problems
    assert problems and all(p.location.path for p in problems)
    first = problems[0]
    assert str(first).startswith(str(path)), str(first)
    assert first.location.line == EXPECTED[name]["line"], caught.value.lines()
    assert EXPECTED[name]["contains"] in str(first), caught.value.lines()
    assert all("\n" not in line for line in caught.value.lines())
    if "count" in EXPECTED[name]:
        assert len(problems) == EXPECTED[name]["count"], caught.value.lines()


def test_all_problems_at_once(tmp_path: Path) -> None:
    """Every problem of every job is reported in one go, sorted by line."""
    path = write(tmp_path, f"""
        model: {T2V}
        jobs:
          - prompt: a
            duration: 2
          - prompt: b
            sound: maybe
          - duraton: 5
    """)
    assert lines(path) == [
        f"{path}:4:15: duration: must be between 3 and 15 (got 2)",
        f"{path}:6:12: sound: must be true or false (got a string `maybe`)",
        f"{path}:7:5: prompt: required field is missing",
        f"{path}:7:14: duraton: unknown field `duraton`; did you mean `duration`?",
    ]


def test_problem_points_at_the_supplier(tmp_path: Path) -> None:
    """A bad value is located where it was written: the job, defaults or the matrix entry."""
    path = write(tmp_path, f"""
        model: {T2V}
        defaults:
          cfg_scale: 3
        matrix:
          duration: [5, 40]
        jobs:
          - prompt: a
            multi_prompt:
              - prompt: x
                duration: 99
    """)
    assert lines(path) == [
        f"{path}:3:14: cfg_scale: must be between 0 and 1 (got 3)",
        f"{path}:5:17: duration: must be between 3 and 15 (got 40)",
        f"{path}:10:19: multi_prompt[0].duration: must be between 3 and 15 (got 99)",
    ]


def test_bad_default_reported_once(tmp_path: Path) -> None:
    """A bad default shared by 10,000 expanded jobs is one line, not 10,000."""
    path = write(tmp_path, f"""
        model: {T2V}
        defaults: {{prompt: "n {{x}}", duration: 1}}
        matrix: {{x: {list(range(10_000))}}}
    """)
    assert lines(path) == [f"{path}:2:39: duration: must be between 3 and 15 (got 1)"]


def test_problem_count_is_capped(tmp_path: Path) -> None:
    """Thousands of distinct problems are cut to the first 1000 with a note saying more exist."""
    jobs = "".join(f"  - {{prompt: p{i}, duration: {100 + i}}}\n" for i in range(1500))
    path = tmp_path / "m.yaml"
    path.write_text(f"model: {T2V}\njobs:\n{jobs}")
    found = lines(path)
    assert len(found) == 1001
    assert "more not shown" in found[0]


def test_anchors_and_merge_keys_are_fine(tmp_path: Path) -> None:
    """YAML anchors, aliases and `<<` merges work, with duplicate-key checks still applied."""
    path = write(tmp_path, f"""
        model: {T2V}
        base: &base {{prompt: shared, duration: 6}}
        jobs:
          - <<: *base
            id: a
          - <<: *base
            id: b
            duration: 7
    """)
    assert "unknown key `base`" in lines(path)[0]
    path.write_text(path.read_text().replace("base: &base", "defaults: &base"))
    jobs = list(load_campaign(path).jobs())
    assert [j.input["duration"] for j in jobs] == [6, 7]


def test_a_merge_of_several_mappings_is_read_as_yaml_reads_it(tmp_path: Path) -> None:
    """In `<<: [*a, *b]` the first mapping wins a key both hold (PyYAML's own safe_load agrees),
    and the job's own keys win over both; a duration error still points at its own line."""
    path = write(tmp_path, f"""
        model: {T2V}
        jobs:
          - &a {{id: one, prompt: first prompt, duration: 5}}
          - &b {{id: two, prompt: second prompt, duration: 10, negative_prompt: blur}}
          - <<: [*a, *b]
            id: three
    """)
    three = [j for j in load_campaign(path).jobs() if j.key.startswith("three")][0]
    assert dict(three.input) == {"prompt": "first prompt", "duration": 5, "negative_prompt": "blur"}
    assert dict(three.input) == {k: v for k, v in yaml.safe_load(path.read_text())["jobs"][2].items() if k != "id"}


def test_alias_guard_limits_what_aliases_add_not_the_manifest_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long manifest without aliases loads whatever its size; aliases adding too many values are refused."""
    from batchrun.manifest import yamlnodes

    monkeypatch.setattr(yamlnodes, "MAX_VALUES", 40)  # the real limit is 500,000
    jobs = "".join(f"  - {{id: j{i}, prompt: take {i}}}\n" for i in range(30))  # ~150 values, no alias
    path = tmp_path / "long.yaml"
    path.write_text(f"model: {T2V}\njobs:\n{jobs}", encoding="utf-8")
    assert len(list(load_campaign(path).jobs())) == 30
    bomb = "a: &a [x, x, x, x, x, x, x]\nb: [*a, *a, *a, *a, *a, *a, *a]\n"  # aliases add 7 x 8 = 56 values
    path.write_text(f"model: {T2V}\n{bomb}", encoding="utf-8")
    assert "aliases expand to more than 40 values" in lines(path)[0]


def test_bom_accepted(tmp_path: Path) -> None:
    """A UTF-8 BOM at the start of a YAML manifest is accepted."""
    path = tmp_path / "m.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + f"model: {T2V}\njobs: [{{prompt: a}}]\n".encode())
    assert load_campaign(path).job_count == 1


def test_a_json_manifest_with_characters_beyond_the_bmp_loads_as_json_reads_it(tmp_path: Path) -> None:
    """`json.dumps` writes 🎬 as the escaped pair `\\ud83c\\udfac`, which YAML parsers refuse: such
    a manifest loads, each pair as its one character; an escaped backslash before `u` stays text."""
    import json

    document = {"model": T2V, "jobs": [{"id": "clap", "prompt": "🎬 action, then \\ud83c\\udfac as typed"}]}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    assert "\\ud83c\\udfac" in path.read_text()  # the file holds the escapes, not the character
    [spec] = list(load_campaign(path).jobs())
    assert spec.input["prompt"] == document["jobs"][0]["prompt"]
    document["jobs"][0]["duration"] = 99  # a later mistake on that line is told at its own column
    path.write_text(json.dumps(document), encoding="utf-8")
    [line] = lines(path)
    assert line.startswith(f"{path}:1:{path.read_text().index('99') + 1}: duration: must be between 3 and 15")
    path.write_text('{"model": "%s", "jobs": [{"prompt": "\\ud83c alone"}]}' % T2V, encoding="utf-8")
    assert "half of a character escaped as two" in lines(path)[0]


def test_an_escape_outside_double_quotes_stays_text_beside_a_json_pair(tmp_path: Path) -> None:
    """Only double-quoted strings read escapes: a single-quoted `\\ud83c\\udfac` is the text as
    typed, even when a double-quoted pair elsewhere in the file is joined."""
    path = write(tmp_path, f"""
        model: {T2V}
        jobs:
          - prompt: "clap \\ud83c\\udfac"
            negative_prompt: 'no \\ud83c\\udfac'
        """)
    [spec] = list(load_campaign(path).jobs())
    assert spec.input == {"prompt": "clap 🎬", "negative_prompt": "no \\ud83c\\udfac"}


def test_missing_manifest(tmp_path: Path) -> None:
    """A missing manifest file is a ManifestError naming it."""
    assert lines(tmp_path / "nope.yaml")[0].startswith(f"{tmp_path / 'nope.yaml'}: cannot read the manifest")


def test_timestamps_stay_text(tmp_path: Path) -> None:
    """YAML dates are kept as the text written (JSON has no dates)."""
    path = write(tmp_path, f"""
        model: {T2V}
        jobs: [{{id: a, prompt: x, negative_prompt: 2024-01-02}}]
    """)
    (job,) = load_campaign(path).jobs()
    assert job.input["negative_prompt"] == "2024-01-02"


@pytest.mark.parametrize("body", ["[" * 100_000 + "]" * 100_000, "\n" + "- " * 100_000 + "x"])
def test_deep_nesting_is_a_problem_not_a_crash(tmp_path: Path, body: str) -> None:
    """Absurdly deep nesting is reported as a problem (the C parser would crash the process)."""
    path = tmp_path / "m.yaml"
    path.write_text(f"model: {T2V}\njobs: {body}\n")
    assert "nested too deeply" in lines(path)[-1] or "nested too deeply" in lines(path)[0]


@pytest.mark.parametrize(("written", "value"), [("1e-1", 0.1), (".5", 0.5), ("1E-1", 0.1), ("-.0", 0.0),
                                                  ("1.e-1", 0.1), ("+5e-1", 0.5), ("0.25", 0.25)])
def test_yaml_12_floats_are_numbers(tmp_path: Path, written: str, value: float) -> None:
    """An unquoted number such as `cfg_scale: 1e-1` is the number 0.1 (YAML 1.2), not the text "1e-1"."""
    path = write(tmp_path, f"""
        model: {T2V}
        jobs: [{{prompt: x, cfg_scale: {written}}}]
    """)
    (job,) = load_campaign(path).jobs()
    assert job.input["cfg_scale"] == value and type(job.input["cfg_scale"]) is float


def test_quoted_or_integer_scalars_keep_their_type(tmp_path: Path) -> None:
    """Quoted `"1e-1"` stays text; `5` stays an integer; `09` is the integer 9 (YAML 1.2); `1e` stays text."""
    from batchrun.manifest import yamlnodes

    doc = yamlnodes.parse('a: "1e-1"\nb: \'1e3\'\nc: 5\nd: 09\ne: 1e\nf: !!str 1e3\ng: 1E3\n', "m.yaml")
    assert doc.value == {"a": "1e-1", "b": "1e3", "c": 5, "d": 9, "e": "1e", "f": "1e3", "g": 1000.0}
    assert type(doc.value["c"]) is int


def test_exponent_float_out_of_range_is_a_located_problem(tmp_path: Path) -> None:
    """`cfg_scale: 1e1` is checked as the number 10, not refused as text."""
    path = write(tmp_path, f"""
        model: {T2V}
        jobs: [{{prompt: x, cfg_scale: 1e1}}]
    """)
    assert lines(path) == [f"{path}:2:31: cfg_scale: must be between 0 and 1 (got 10.0)"]


def test_empty_id_says_it_is_empty(tmp_path: Path) -> None:
    """`id: ""` (or blank) is reported as empty, not as the wrong type."""
    for written in ('""', "'  '"):
        path = write(tmp_path, f"""
            model: {T2V}
            jobs:
              - id: {written}
                prompt: x
        """)
        assert lines(path) == [f"{path}:3:9: id: must not be empty"]


@pytest.mark.parametrize(("written", "value"), [
    ("010", 10), ("007", 7), ("0o17", 15), ("0x1A", 26), ("+5", 5), ("-0", 0),
    ("1_0", "1_0"), ("1_000.5", "1_000.5"), ("0b101", "0b101"), ("4:3", "4:3"), ("1:30", "1:30"),
    ("yes", "yes"), ("No", "No"), ("off", "off"), ("on", "on"), ("y", "y"),
    ("true", True), ("False", False), ("TRUE", True), ("~", None), (".inf", float("inf")),
    ("1" * 101, "1" * 101), ("0x" + "f" * 5000, "0x" + "f" * 5000),
])
def test_plain_scalars_follow_the_yaml_1_2_core_schema(written: str, value: object) -> None:
    """YAML 1.1's surprises are gone: `010` is 10, `yes`/`off` and `1_0` stay the text written,
    and a number too long to be meant is text (the validator then names the field), never a crash."""
    from batchrun.manifest import yamlnodes

    key = f"{written}: key\n" if len(written) < 100 else ""  # YAML keys are at most 1024 characters
    doc = yamlnodes.parse(f"a: {written}\nb: [{written}]\n{key}", "m.yaml")
    assert doc.problems == []
    assert doc.value["a"] == value and doc.value["b"] == [value] and type(doc.value["a"]) is type(value)
    if key:
        assert doc.value[value] == "key"


def test_a_matrix_of_words_stays_words_in_the_prompt(tmp_path) -> None:
    """`word: [yes, off]` renders `yes` and `off`, not `true` and `false`."""
    from batchrun.manifest.loader import load_campaign

    path = tmp_path / "m.yaml"
    path.write_text("name: w\nmodel: kling/kling-3.0/pro/text-to-video\ndefaults: {duration: 05}\n"
                    "matrix:\n  word: [yes, off]\njobs:\n  - id: sign\n    prompt: 'a sign that says {word}'\n")
    specs = list(load_campaign(path).jobs())
    assert sorted(spec.input["prompt"] for spec in specs) == ["a sign that says off", "a sign that says yes"]
    assert {spec.input["duration"] for spec in specs} == {5}
