"""Expansion of manifests into jobs: matrix x jobs x takes, precedence, keys and file names."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from batchrun.cost import PriceTable
from batchrun.domain import fingerprint
from batchrun.errors import ManifestError
from batchrun.manifest import load_campaign

T2V = "kling/kling-3.0/pro/text-to-video"
I2V = "kling/kling-3.0/standard/image-to-video"


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def lines(path: Path, **options: object) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_campaign(path, **options)  # type: ignore[arg-type]
    return caught.value.lines()


def test_simple_jobs(tmp_path: Path) -> None:
    """Each job becomes one JobSpec holding only what the user wrote (no schema defaults)."""
    path = write(tmp_path, f"""
        model: {T2V}
        jobs:
          - id: a
            prompt: one
          - id: b
            prompt: two
            duration: 7
    """)
    campaign = load_campaign(path)
    jobs = list(campaign.jobs())
    assert [j.key for j in jobs] == ["a-t1", "b-t1"]
    assert jobs[0].input == {"prompt": "one"}
    assert jobs[1].input == {"prompt": "two", "duration": 7}
    assert [j.output_name for j in jobs] == ["a.mp4", "b.mp4"]
    assert jobs[0].user_id == "a" and jobs[0].take == 1 and jobs[0].model == T2V
    assert jobs[1].location.line == 6
    assert jobs[0].fingerprint == fingerprint(T2V, {"prompt": "one"})
    assert campaign.name == "m" and campaign.job_count == 2
    assert campaign.manifest_path == path.resolve()
    assert campaign.output_dir == (tmp_path / "m-output").resolve()


def test_campaign_settings(tmp_path: Path) -> None:
    """name, output.dir, budget and prices come from the manifest; --prices goes on top."""
    path = write(tmp_path, f"""
        name: spring
        model: {T2V}
        budget: 12.5
        prices: {{pro: {{silent: 1, audio: 2}}, standard: 3}}
        output: {{dir: ../videos}}
        jobs: [{{prompt: x}}]
    """)
    campaign = load_campaign(path)
    assert campaign.name == "spring" and campaign.budget == 12.5
    assert campaign.output_dir == (tmp_path.parent / "videos").resolve()
    assert campaign.prices.price_for(T2V).audio == 2  # type: ignore[union-attr]
    flag = PriceTable.default().with_overrides({"pro": {"audio": 9}}, source="p.yaml")
    campaign = load_campaign(path, prices=flag)
    assert campaign.prices.price_for(T2V).audio == 9  # type: ignore[union-attr]
    assert campaign.prices.price_for(I2V).silent == 3  # type: ignore[union-attr]


def test_precedence(tmp_path: Path) -> None:
    """defaults < the job's own fields < the matrix value."""
    path = write(tmp_path, f"""
        model: {T2V}
        defaults: {{duration: 5, aspect_ratio: "1:1", negative_prompt: blur}}
        matrix: {{aspect_ratio: ["16:9"]}}
        jobs:
          - {{id: a, prompt: x, duration: 8, aspect_ratio: "9:16"}}
    """)
    (job,) = load_campaign(path).jobs()
    assert job.input == {"duration": 8, "aspect_ratio": "16:9", "negative_prompt": "blur", "prompt": "x"}


def test_matrix_times_jobs_order(tmp_path: Path) -> None:
    """Jobs are expanded in job order, then matrix order with the last key varying fastest."""
    path = write(tmp_path, f"""
        model: {T2V}
        matrix:
          style: [noir, pastel]
          aspect_ratio: ["16:9", "1:1"]
        jobs:
          - {{id: "a-{{aspect_ratio}}-{{style}}", prompt: "a {{style}}"}}
          - {{id: b, prompt: "b {{style}}"}}
    """)
    jobs = list(load_campaign(path).jobs())
    assert [j.key for j in jobs] == [
        "a-16x9-noir-t1", "a-1x1-noir-t1", "a-16x9-pastel-t1", "a-1x1-pastel-t1",
        "b-noir-16x9-t1", "b-noir-1x1-t1", "b-pastel-16x9-t1", "b-pastel-1x1-t1",
    ]
    assert [j.input["aspect_ratio"] for j in jobs[4:]] == ["16:9", "1:1", "16:9", "1:1"]
    assert jobs[5].input["prompt"] == "b noir"
    assert dict(jobs[5].variables) == {"style": "noir", "aspect_ratio": "1:1"}


def test_id_naming_some_matrix_keys_must_be_unique(tmp_path: Path) -> None:
    """An id naming only some matrix keys repeats across the others: that is a duplicate-id problem."""
    path = write(tmp_path, f"""
        model: {T2V}
        matrix:
          style: [noir, pastel]
          aspect_ratio: ["16:9", "1:1"]
        jobs:
          - {{id: "a-{{style}}", prompt: "a {{style}}"}}
    """)
    assert lines(path) == [f"{path}:7:10: id: the id gives several matrix combinations the same id `a-noir`; "
                           "use `{aspect_ratio}` in it too"]  # once, naming the key it lacks


def test_defaults_only_matrix(tmp_path: Path) -> None:
    """A matrix without jobs expands `defaults` alone, located at the matrix key."""
    path = write(tmp_path, f"""
        model: {T2V}
        defaults:
          prompt: "a {{animal}}"
        matrix:
          animal: [cat, dog, owl]
    """)
    jobs = list(load_campaign(path).jobs())
    assert [j.input["prompt"] for j in jobs] == ["a cat", "a dog", "a owl"]
    assert jobs[0].key.startswith("a-cat-") and jobs[0].key.endswith("-t1")
    assert jobs[0].location.line == 6


def test_matrix_field_typed_values_and_nested_templates(tmp_path: Path) -> None:
    """Matrix values keep their YAML type; variables reach multi_prompt prompts and element URLs."""
    path = write(tmp_path, """
        model: kling/kling-3.0/pro/image-to-video
        defaults:
          start_image_url: "https://example.com/{shot}.png"
          elements: [{frontal_image_url: "https://example.com/{shot}-face.png"}]
        matrix:
          duration: [6]
          shot: [wide, close]
        jobs:
          - prompt: go
            multi_prompt: [{prompt: "{shot} one", duration: 3}, {prompt: two, duration: 3}]
    """)
    jobs = list(load_campaign(path).jobs())
    assert jobs[0].input["duration"] == 6
    assert jobs[1].input["start_image_url"] == "https://example.com/close.png"
    assert jobs[1].input["elements"][0]["frontal_image_url"] == "https://example.com/close-face.png"
    assert jobs[1].input["multi_prompt"][0]["prompt"] == "close one"


def test_takes(tmp_path: Path) -> None:
    """takes (top-level default, per-job override) gives independent jobs with -tN keys and files."""
    path = write(tmp_path, f"""
        model: {T2V}
        takes: 2
        jobs:
          - {{id: a, prompt: x}}
          - {{id: b, prompt: y, takes: 1}}
          - {{prompt: z, takes: 3}}
    """)
    jobs = list(load_campaign(path).jobs())
    assert [j.key for j in jobs][:3] == ["a-t1", "a-t2", "b-t1"]
    assert [j.output_name for j in jobs][:3] == ["a-t1.mp4", "a-t2.mp4", "b.mp4"]
    assert [j.take for j in jobs[3:]] == [1, 2, 3]
    assert len({j.fingerprint for j in jobs[3:]}) == 1
    assert load_campaign(path).job_count == 6


def test_key_without_id(tmp_path: Path) -> None:
    """Without an id the key is prompt words + 8 hex of the fingerprint + take."""
    path = write(tmp_path, f"""
        model: {T2V}
        jobs:
          - prompt: "Golden cliff at sunset, waves below"
          - prompt: "   ¡Ünïcode! ... "
            negative_prompt: x
          - prompt: "Supercalifragilisticexpialidociousness is long"
    """)
    jobs = list(load_campaign(path).jobs())
    fp = fingerprint(T2V, {"prompt": "Golden cliff at sunset, waves below"})
    assert jobs[0].key == f"golden-cliff-at-{fp[:8]}-t1"
    assert jobs[0].output_name == f"golden-cliff-at-{fp[:8]}.mp4"
    assert jobs[0].user_id is None
    assert jobs[1].key.startswith("unicode-")
    assert jobs[2].key.startswith("supercalifragilisticexpi-")


def test_keys_stable_and_change_with_input(tmp_path: Path) -> None:
    """Keys are the same across loads, and change exactly when model or input change."""
    text = f"""
        model: {T2V}
        jobs:
          - prompt: a red fox
          - prompt: a blue fox
    """
    first = [j.key for j in load_campaign(write(tmp_path, text)).jobs()]
    assert first == [j.key for j in load_campaign(write(tmp_path, text)).jobs()]
    changed = [j.key for j in load_campaign(write(tmp_path, text.replace("blue", "green"))).jobs()]
    assert changed[0] == first[0] and changed[1] != first[1]
    other_model = [j.key for j in load_campaign(write(tmp_path, text), model=T2V.replace("pro", "4k")).jobs()]
    assert set(other_model).isdisjoint(first)


def test_duplicate_job_without_id(tmp_path: Path) -> None:
    """Two identical jobs without ids are a problem pointing at both lines."""
    path = write(tmp_path, f"""
        model: {T2V}
        jobs:
          - prompt: same
          - prompt: same
    """)
    assert lines(path) == [f"{path}:5:5: duplicate job (same model and input as line 4); "
                           "use takes: 2 for several generations"]


def test_duplicate_ids(tmp_path: Path) -> None:
    """Duplicate ids (also differing only in case) are problems naming both lines."""
    path = write(tmp_path, f"""
        model: {T2V}
        jobs:
          - {{id: hero, prompt: a}}
          - {{id: Hero, prompt: b}}
          - {{id: 7, prompt: c}}
          - {{id: "bad id", prompt: d}}
    """)
    assert lines(path) == [
        f"{path}:5:10: id: duplicate id `Hero` (also line 4)",
        f"{path}:7:10: id: id `bad id` may only use ASCII letters, digits, `.`, `_` and `-`",
    ]


def test_jobs_with_ids_are_still_compared_by_input(tmp_path: Path) -> None:
    """An id template does not make the matrix's copies of a job different requests: a job whose
    matrix key only reaches its id would pay for one video three times. A job without an id that
    repeats a named one is a duplicate too; two jobs the user named both are two jobs asked for."""
    path = write(tmp_path, f"""
        model: {T2V}
        matrix: {{style: [noir, pastel, noir2]}}
        jobs:
          - {{id: "hero-{{style}}", prompt: a hero walks}}
          - {{id: "a-{{style}}", prompt: "{{style}} city"}}
          - {{id: "b-{{style}}", prompt: "{{style}} city"}}
          - {{prompt: "{{style}} city"}}
    """)
    assert lines(path) == [
        f"{path}:5:5: this job gets the same model and input for matrix style=noir and style=pastel; use "
        "`{style}` in its prompt (or an input field), or takes: N for several generations",
        f"{path}:8:5: duplicate job (same model and input as line 6); use takes: 2 for several generations",
    ]


def test_matrix_values_that_read_the_same_are_named(tmp_path: Path) -> None:
    """Two matrix values that give the same text (`1_000` unquoted is text too) are named, so the
    user sees which ones to change instead of being told to use a key the prompt already uses."""
    path = write(tmp_path, f"""
        model: {T2V}
        matrix: {{n: [1_000, "2", "1_000"]}}
        jobs: [{{prompt: "{{n}} birds"}}]
    """)
    assert lines(path) == [
        f"{path}:4:8: this job gets the same model and input for matrix n=1_000 and n=1_000; these values "
        "read the same: make them differ or drop one",
    ]


def test_matrix_numbers_reach_prompts_as_written(tmp_path: Path) -> None:
    """`price: [9.90, 007]` puts "9.90" and "007" into the prompt and the file name, not Python's
    9.9 and 7; a field still gets the number, and ids keep the slugs they always had (a campaign
    made before keeps its jobs)."""
    path = write(tmp_path, f"""
        model: {T2V}
        matrix: {{price: [9.90, 007, +3], duration: [05]}}
        output: {{filename: "{{price}}-{{duration}}.mp4"}}
        jobs: [{{id: p, prompt: "now only {{price}} dollars, {{duration}} seconds"}}]
    """)
    jobs = list(load_campaign(path).jobs())
    assert [j.input["prompt"] for j in jobs] == [
        "now only 9.90 dollars, 05 seconds", "now only 007 dollars, 05 seconds", "now only +3 dollars, 05 seconds"]
    assert [j.output_name for j in jobs] == ["9.90-05.mp4", "007-05.mp4", "+3-05.mp4"]
    assert all(j.input["duration"] == 5 for j in jobs)
    assert [j.key for j in jobs] == ["p-9.9-5-t1", "p-7-5-t1", "p-3-5-t1"]


def test_a_written_str_tag_keeps_the_text(tmp_path: Path) -> None:
    """`!!str 010` is the text 010, as YAML says, not the number 10."""
    path = write(tmp_path, f"""
        model: {T2V}
        matrix: {{n: [!!str 010, !!str 9.90]}}
        jobs: [{{prompt: "take {{n}}"}}, {{prompt: !!str 0123, negative_prompt: "{{n}}"}}]
    """)
    assert [j.input["prompt"] for j in load_campaign(path).jobs()] == ["take 010", "take 9.90", "0123", "0123"]


def test_a_templated_matrix_field_reaches_other_strings_as_sent(tmp_path: Path) -> None:
    """`{prompt}` elsewhere (a negative prompt, the file name) is the prompt as sent, with its own
    `{style}` filled and `{{x}}` made `{x}`, never the template as written."""
    path = write(tmp_path, f"""
        model: {T2V}
        defaults: {{duration: 5, negative_prompt: "not {{prompt}}"}}
        matrix: {{style: [noir], prompt: ["a cat, {{style}}", "a dog {{{{x}}}}, {{style}}"]}}
        output: {{filename: "{{prompt}}.mp4"}}
    """)
    jobs = list(load_campaign(path).jobs())
    assert [(j.input["prompt"], j.input["negative_prompt"], j.output_name) for j in jobs] == [
        ("a cat, noir", "not a cat, noir", "a cat, noir.mp4"),
        ("a dog {x}, noir", "not a dog {x}, noir", "a dog {x}, noir.mp4"),
    ]


def test_a_field_written_at_its_schema_default_is_the_same_request(tmp_path: Path) -> None:
    """Two jobs that differ only by writing out schema defaults (`sound: true`, `cfg_scale: 0.5`)
    send the same request: a duplicate, as if written alike."""
    path = write(tmp_path, f"""
        model: {T2V}
        jobs:
          - {{prompt: X, duration: 5}}
          - {{prompt: X, duration: 5, sound: true, aspect_ratio: "16:9", cfg_scale: 0.5}}
    """)
    assert lines(path) == [f"{path}:5:5: duplicate job (same model and input as line 4); "
                           "use takes: 2 for several generations"]


def test_numbers_that_read_the_same_get_two_ids(tmp_path: Path) -> None:
    """`price: [9.90, 9.9]` are two prompts; their ids get told apart by a hash of the text written."""
    path = write(tmp_path, f"""
        model: {T2V}
        matrix: {{price: [9.90, 9.9]}}
        jobs: [{{id: "p-{{price}}", prompt: "costs {{price}}"}}]
    """)
    jobs = list(load_campaign(path).jobs())
    assert [j.input["prompt"] for j in jobs] == ["costs 9.90", "costs 9.9"]
    assert len({j.key for j in jobs}) == 2 and all(j.key.startswith("p-9.9-") for j in jobs)


def test_filename_template(tmp_path: Path) -> None:
    """output.filename renders id, take, key, campaign, model and matrix variables (path-safe)."""
    path = write(tmp_path, f"""
        name: camp
        model: {T2V}
        matrix: {{aspect_ratio: ["16:9", "1:1"]}}
        output:
          filename: "{{campaign}}/{{model}}/{{aspect_ratio}}/{{id}}_{{take}}_{{key}}.mov"
        jobs: [{{id: a, prompt: x}}]
    """)
    names = [j.output_name for j in load_campaign(path).jobs()]
    assert names == [
        "camp/kling_kling-3.0_pro_text-to-video/16x9/a-16x9_1_a-16x9-t1.mov",
        "camp/kling_kling-3.0_pro_text-to-video/1x1/a-1x1_1_a-1x1-t1.mov",
    ]


@pytest.mark.parametrize(
    ("template", "needle"),
    [
        ("/abs/{id}.mp4", "must be a relative path"),
        ("../{id}.mp4", "must not contain `..`"),
        ("a/../../{id}.mp4", "must not contain `..`"),
        ("a\\\\{id}.mp4", "backslash"),
        ("CON.mp4", "Windows reserves"),
        ("out/lpt1", "Windows reserves"),
        ("{id}.", "dot or space"),
        ("{id}.mp4 ", "dot or space"),
        ("a//{id}.mp4", "empty path segment"),
        ("./{id}.mp4", "write the path without it"),
        ("x" * 201, "longer than 200"),
        ("C:/{id}.mp4", "relative path"),
        ("{id}\\t.mp4", "control character"),
        ("same.mp4", "is also written by the job at line"),
        ("{id}.mp4", "is also written by the job at line"),  # takes: 2 without {take}
    ],
)
def test_unsafe_or_colliding_filenames(tmp_path: Path, template: str, needle: str) -> None:
    """Output names must be safe relative paths, and no two jobs may write the same file."""
    path = write(tmp_path, f"""
        model: {T2V}
        takes: 2
        output: {{filename: "{template}"}}
        jobs: [{{id: a, prompt: x}}, {{id: b, prompt: y}}]
    """)
    found = lines(path)
    assert any(needle in line for line in found), found


def test_names_that_differ_only_in_unicode_normalization_collide(tmp_path: Path) -> None:
    """`Café` typed (NFC) and `Café` pasted from a Mac (NFD) are one file on macOS and Windows."""
    nfc, nfd = "Caf\u00e9", "Cafe\u0301"
    path = write(tmp_path, f"""
        model: {T2V}
        matrix: {{place: ["{nfc}", "{nfd}"]}}
        output: {{filename: "{{place}}.mp4"}}
        jobs: [{{prompt: "a table at {{place}}"}}]
    """)
    found = lines(path)
    assert len(found) == 1 and f"output file `{nfd}.mp4` is also written by the job" in found[0], found


def test_default_filenames_collide(tmp_path: Path) -> None:
    """Default names can collide (id x-t1 vs id x with 2 takes): reported, not overwritten."""
    path = write(tmp_path, f"""
        model: {T2V}
        jobs: [{{id: x-t1, prompt: a}}, {{id: x, prompt: b, takes: 2}}]
    """)
    assert lines(path) == [f"{path}:3:31: output.filename: output file `x-t1.mp4` is also written by the job at line 3"]


def test_model_flag_and_job_model(tmp_path: Path) -> None:
    """--model replaces the manifest's model; a job's own model still wins."""
    path = write(tmp_path, f"""
        model: {T2V}
        jobs:
          - {{prompt: a}}
          - {{prompt: b, model: "{I2V}", start_image_url: "https://e.com/a.png"}}
    """)
    jobs = list(load_campaign(path, model="kling/kling-3.0/4k/text-to-video").jobs())
    assert [j.model for j in jobs] == ["kling/kling-3.0/4k/text-to-video", I2V]


def test_unknown_model(tmp_path: Path) -> None:
    """An unknown model is a problem with did-you-mean, unless --allow-unknown-model."""
    path = write(tmp_path, """
        model: acme/video-1
        jobs: [{prompt: a, weird: {nested: [1]}}]
    """)
    assert "unknown model `acme/video-1`" in lines(path)[0]
    (job,) = load_campaign(path, allow_unknown_model=True).jobs()
    assert job.model == "acme/video-1" and job.input == {"prompt": "a", "weird": {"nested": [1]}}


def test_csv_and_jobs_combined(tmp_path: Path) -> None:
    """YAML jobs come first, then CSV rows; the matrix applies to both."""
    (tmp_path / "rows.csv").write_text("id,prompt,duration\nr1,row one {s},6\nr2,row two {s},\n")
    path = write(tmp_path, f"""
        model: {T2V}
        csv: rows.csv
        matrix: {{s: [x, y]}}
        jobs: [{{id: y1, prompt: "yaml {{s}}"}}]
    """)
    jobs = list(load_campaign(path).jobs())
    assert [j.key for j in jobs] == ["y1-x-t1", "y1-y-t1", "r1-x-t1", "r1-y-t1", "r2-x-t1", "r2-y-t1"]
    assert jobs[2].input == {"prompt": "row one x", "duration": 6}
    assert jobs[4].input == {"prompt": "row two x"}
    assert str(jobs[2].location) == f"{tmp_path / 'rows.csv'}:2:1"


def test_bare_csv_manifest(tmp_path: Path) -> None:
    """A CSV file can be the manifest itself, with --model; its name is the file stem."""
    path = tmp_path / "shots.csv"
    path.write_text("prompt,sound,takes\nhello,no,2\n")
    campaign = load_campaign(path, model=T2V)
    assert campaign.name == "shots" and campaign.job_count == 2
    assert [j.input for j in campaign.jobs()] == [{"prompt": "hello", "sound": False}] * 2
    assert "pass --model" in lines(path)[0]


def test_max_jobs_cap(tmp_path: Path) -> None:
    """Too many jobs is one problem at the matrix line, computed without expanding."""
    path = write(tmp_path, f"""
        model: {T2V}
        takes: 10
        jobs: [{{prompt: "a {{x}}{{y}}"}}, {{prompt: "b {{x}}{{y}}"}}]
        matrix:
          x: {list(range(1000))}
          y: {list(range(1000))}
    """)
    assert lines(path, max_jobs=1000) == [
        f"{path}:5:1: matrix: expands to 20,000,000 jobs, more than the cap of 1,000 (--max-jobs)"]


def test_jobs_is_lazy_and_repeatable(tmp_path: Path) -> None:
    """jobs() is a fresh generator each call and yields the same jobs."""
    path = write(tmp_path, f"""
        model: {T2V}
        matrix: {{x: {list(range(50))}}}
        defaults: {{prompt: "n {{x}}"}}
    """)
    campaign = load_campaign(path)
    first = campaign.jobs()
    assert next(first).key == next(campaign.jobs()).key
    assert [j.key for j in campaign.jobs()] == [j.key for j in campaign.jobs()]


def test_numeric_ids_keep_their_digits(tmp_path: Path) -> None:
    """`id: 007` names the job 007, not 7 (YAML would read it as a number)."""
    path = write(tmp_path, f"""
        model: {T2V}
        jobs: [{{id: 007, prompt: a}}, {{id: 12, prompt: b}}]
    """)
    assert [j.key for j in load_campaign(path).jobs()] == ["007-t1", "12-t1"]


def test_numeric_float_ids_keep_their_text(tmp_path: Path) -> None:
    """`id: 1e3` or `id: 1.50` names the job as written, even though YAML reads a number."""
    path = write(tmp_path, f"""
        model: {T2V}
        jobs: [{{id: 1e3, prompt: a}}, {{id: 1.50, prompt: b}}]
    """)
    assert [j.key for j in load_campaign(path).jobs()] == ["1e3-t1", "1.50-t1"]


def test_short_hash_collision_gets_longer_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two different jobs whose 8-hex hashes collide get distinct keys, the same on every load."""
    import hashlib

    from batchrun.manifest import expand

    def colliding(model: str, input: dict) -> str:  # same first 8 hex for every input
        return "deadbeef" + hashlib.sha256(repr(sorted(input.items())).encode()).hexdigest()[8:]

    monkeypatch.setattr(expand, "fingerprint", colliding)
    path = write(tmp_path, f"""
        model: {T2V}
        jobs: [{{prompt: red fox}}, {{prompt: red fox, duration: 6}}]
    """)
    keys = [j.key for j in load_campaign(path).jobs()]
    assert keys[0] == "red-fox-deadbeef-t1"
    assert keys[1].startswith("red-fox-deadbeef") and len(keys[1]) == len("red-fox--t1") + 16
    assert keys == [j.key for j in load_campaign(path).jobs()]


def test_unquoted_ratios_stay_text_not_base_60_numbers(tmp_path):
    """`aspect_ratio: 16:9` written without quotes means the text 16:9, not YAML 1.1's number 969."""
    from batchrun.manifest import load_campaign

    path = tmp_path / "m.yaml"
    path.write_text("model: kling/kling-3.0/pro/text-to-video\njobs:\n  - prompt: a\n    aspect_ratio: 16:9\n")
    (spec,) = load_campaign(path).jobs()
    assert spec.input["aspect_ratio"] == "16:9"


def test_duplicate_id_is_reported_even_when_the_first_job_is_invalid(tmp_path):
    """Every problem is listed at once: a bad first job does not hide a duplicate id after it."""
    import pytest

    from batchrun.errors import ManifestError
    from batchrun.manifest import load_campaign

    path = tmp_path / "m.yaml"
    path.write_text(
        "model: kling/kling-3.0/pro/text-to-video\njobs:\n  - id: a\n    prompt: x\n    duration: 99\n"
        "  - id: a\n    prompt: y\n"
    )
    with pytest.raises(ManifestError) as caught:
        load_campaign(path)
    lines = caught.value.lines()
    assert any(":5:" in line and "duration" in line for line in lines)
    assert any(":6:" in line and "duplicate id `a`" in line for line in lines)


def test_matrix_values_follow_the_brace_rules_of_every_string(tmp_path: Path) -> None:
    """`{{`/`}}` in a matrix value are literal braces, as in a prompt: RunComfy gets `{x}`."""
    path = write(tmp_path, f"""
        name: spring ads
        model: {T2V}
        matrix:
          mood: ["calm {{{{sic}}}}", plain]
        jobs:
          - id: "a-{{mood}}"
            prompt: "a harbour, {{mood}}"
    """)
    campaign = load_campaign(path)
    assert [spec.input["prompt"] for spec in campaign.jobs()] == ["a harbour, calm {sic}", "a harbour, plain"]
    assert campaign.name == "spring ads" and campaign.output_dir.name == "spring ads-output"


def test_unicode_line_separators_in_a_prompt_are_kept_as_written(tmp_path: Path) -> None:
    """NEL, LS and PS are ordinary characters in YAML 1.2: RunComfy gets them, not a space."""
    path = write(tmp_path, f"""
        model: {T2V}
        jobs:
          - prompt: "one\u0085two\u2028three\u2029four"
          - prompt: 'plain\u0085single'
    """)
    assert [spec.input["prompt"] for spec in load_campaign(path).jobs()] == [
        "one\x85two\u2028three\u2029four", "plain\x85single"]
