"""Property tests: job counts, key uniqueness and stability, and no crash on arbitrary input."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchrun.errors import ManifestError
from batchrun.manifest import load_campaign

T2V = "kling/kling-3.0/pro/text-to-video"
FAST = settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])

names = st.sampled_from(["style", "mood", "light", "lens", "era"])
values = st.lists(st.text(alphabet="abcxyz019 -:", min_size=1, max_size=6), min_size=1, max_size=4, unique=True)


def load_text(text: str | bytes, suffix: str = ".yaml", **options: object):  # noqa: ANN201
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"m{suffix}"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        campaign = load_campaign(path, **options)  # type: ignore[arg-type]
        return campaign, list(campaign.jobs())


@FAST
@given(
    matrix=st.dictionaries(names, values, min_size=0, max_size=3),
    prompts=st.lists(st.text(alphabet="abc ", min_size=1, max_size=8).filter(str.strip), min_size=1,
                     max_size=3, unique=True),
    takes=st.lists(st.integers(1, 3), min_size=3, max_size=3),
    with_ids=st.booleans(),
)
def test_count_and_unique_stable_keys(matrix: dict, prompts: list, takes: list, with_ids: bool) -> None:
    """jobs == product(matrix sizes) x sum of takes; keys and file names are unique and stable."""
    variables = "".join(f" {{{k}}}" for k in matrix)
    jobs = [{"prompt": f"{p}{variables}", "takes": takes[i]} | ({"id": f"job{i}"} if with_ids else {})
            for i, p in enumerate(prompts)]
    manifest = json.dumps({"model": T2V, "matrix": matrix, "jobs": jobs} if matrix else
                          {"model": T2V, "jobs": jobs})
    campaign, first = load_text(manifest)
    expected = math.prod(len(v) for v in matrix.values()) * sum(takes[: len(prompts)])
    assert campaign.job_count == len(first) == expected
    assert len({j.key for j in first}) == len(first)
    assert len({j.output_name.casefold() for j in first}) == len(first)
    _, second = load_text(manifest)
    assert [j.key for j in second] == [j.key for j in first]
    assert [j.fingerprint for j in second] == [j.fingerprint for j in first]


@settings(deadline=None, max_examples=150)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_manifest_error(data: bytes) -> None:
    """Whatever bytes a manifest holds, loading gives a campaign or a ManifestError, never a crash."""
    for suffix in (".yaml", ".csv"):
        try:
            load_text(data, suffix, model=T2V)
        except ManifestError as error:
            assert error.problems


yamlish = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 20), st.floats(allow_nan=True),
              st.text(alphabet="ab{}: -\n'\"#&*!|>%@`\\", max_size=8),
              st.sampled_from(["prompt", "duration", "model", T2V, "{x}", "*a", "&a x", "!!binary x", "<<"])),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.sampled_from(
                                   ["prompt", "duration", "jobs", "matrix", "defaults", "id", "takes", "model",
                                    "output", "filename", "dir", "csv", "budget", "prices", "x", "sound",
                                    "multi_prompt", "<<"]), children, max_size=5)),
    max_leaves=20,
)


@settings(deadline=None, max_examples=150)
@given(st.dictionaries(st.sampled_from(["name", "model", "defaults", "jobs", "matrix", "takes", "output",
                                        "budget", "prices", "csv", "jbos"]), yamlish, max_size=6),
       st.booleans())
def test_arbitrary_yamlish_only_raise_manifest_error(top: dict, as_json: bool) -> None:
    """Random manifest-shaped documents load or fail with located problems, never crash."""
    import yaml

    text = json.dumps(top, default=str) if as_json else yaml.safe_dump(top, allow_unicode=True)
    try:
        _, jobs = load_text(text)
    except ManifestError as error:
        assert error.problems and all(p.location.path for p in error.problems)
    else:
        assert all(j.key for j in jobs)


@settings(deadline=None, max_examples=100)
@given(st.text(alphabet="model:kling/3.0prtx-v\njobs[]{}prompt, '\"#&*!-\t", max_size=200))
def test_random_yaml_text_only_raises_manifest_error(text: str) -> None:
    """Random YAML-ish text loads or fails with a ManifestError."""
    try:
        load_text(text)
    except ManifestError as error:
        assert error.problems


@settings(deadline=None, max_examples=100)
@given(st.lists(st.text(alphabet='ab{}[]":,. 019-\\\n\ufeff', max_size=12), min_size=1, max_size=6),
       st.lists(st.sampled_from(["prompt", "duration", "sound", "cfg_scale", "multi_prompt", "id", "takes",
                                 "model", "aspect_ratio", " prompt ", ""]), min_size=1, max_size=5))
def test_random_csv_only_raises_manifest_error(cells: list[str], headers: list[str]) -> None:
    """Random CSV cells under real column names load or fail with a ManifestError."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(headers)
    writer.writerow(cells)
    try:
        load_text(buffer.getvalue(), ".csv", model=T2V)
    except ManifestError as error:
        assert error.problems
