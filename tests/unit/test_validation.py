"""Schema validation of job inputs: every field of both published schemas, good and bad."""

from __future__ import annotations

from typing import Any

import pytest

from batchrun.catalog import lookup
from batchrun.validation import FieldIssue, coerce_text, effective_input, validate_input

T2V = lookup("kling/kling-3.0/pro/text-to-video")
I2V = lookup("kling/kling-3.0/standard/image-to-video")
assert T2V is not None and I2V is not None
IMG = "https://example.com/a.png"


def issues(model: Any, input: Any) -> dict[str, str]:
    return {issue.field: issue.message for issue in validate_input(model, input)}


def i2v(**fields: Any) -> dict[str, Any]:
    return {"prompt": "a cat", "start_image_url": IMG, **fields}


def t2v(**fields: Any) -> dict[str, Any]:
    return {"prompt": "a cat", **fields}


def test_field_issue_path() -> None:
    """Nested problems are named the way users write them."""
    assert FieldIssue(("multi_prompt", 2, "duration"), "x").field == "multi_prompt[2].duration"
    assert FieldIssue(("elements", 0, "reference_image_urls", 1), "x").field == \
        "elements[0].reference_image_urls[1]"
    assert FieldIssue((), "x").field == ""


def test_minimal_inputs_are_valid() -> None:
    """The required fields alone are enough."""
    assert validate_input(T2V, t2v()) == []
    assert validate_input(I2V, i2v()) == []


def test_full_inputs_are_valid() -> None:
    """Every field of each schema, set to a good value, passes."""
    assert issues(T2V, t2v(negative_prompt="blur", duration=15, aspect_ratio="1:1", cfg_scale=1, sound=False,
                           shot_type="customize",
                           multi_prompt=[{"prompt": "a", "duration": 7}, {"prompt": "b", "duration": 8}])) == {}
    assert issues(I2V, i2v(duration=3, generate_audio=False, cfg_scale=0.25, shot_type="customize",
                           negative_prompt="", multi_prompt=[{"prompt": "a", "duration": 3}],
                           elements=[{"frontal_image_url": IMG, "reference_image_urls": [IMG, IMG],
                                      "video_url": "https://example.com/v.mp4"}])) == {}


def test_required_fields() -> None:
    """A missing required field is named."""
    assert issues(I2V, {"prompt": "x"}) == {"start_image_url": "required field is missing"}
    assert issues(T2V, {}) == {"prompt": "required field is missing"}


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("prompt", 5, "must be a string"),
        ("prompt", "   ", "must not be empty"),
        ("prompt", None, "must be a string (got null"),
        ("negative_prompt", ["x"], "must be a string (got a list)"),
        ("duration", 2, "between 3 and 15"),
        ("duration", 16, "between 3 and 15"),
        ("duration", 5.5, "must be an integer"),
        ("duration", 5.0, "must be an integer"),
        ("duration", True, "must be an integer"),
        ("duration", "5", "must be an integer"),
        ("aspect_ratio", "4:3", "must be one of 16:9, 9:16, 1:1"),
        ("aspect_ratio", "16:09", "did you mean `16:9`"),
        ("cfg_scale", 1.5, "between 0 and 1"),
        ("cfg_scale", -0.1, "between 0 and 1"),
        ("cfg_scale", True, "must be a number"),
        ("cfg_scale", "0.5", "must be a number"),
        ("cfg_scale", float("nan"), "must be a finite number (got nan)"),
        ("cfg_scale", float("inf"), "must be a finite number (got inf)"),
        ("sound", "yes", "must be true or false"),
        ("sound", 1, "must be true or false"),
        ("shot_type", "auto", "must be one of customize"),
        ("multi_prompt", {"prompt": "a"}, "must be a list"),
        ("multi_prompt", [{"prompt": "a", "duration": 3}] * 21, "at most 20 items"),
    ],
)
def test_t2v_bad_values(field: str, value: Any, needle: str) -> None:
    """Each wrong value gives one clear message naming what was expected."""
    found = issues(T2V, t2v(**{field: value}))
    assert field in found, found
    assert needle in found[field]


@pytest.mark.parametrize("prompt", ["\u200b", "\u200d\u200b", "\u0301\u0301", "\u3164", "\u2800 \u115f"])
def test_a_prompt_that_shows_nothing_is_refused(prompt: str) -> None:
    """Zero-width, combining-only or blank-glyph prompts would be paid for and show nothing."""
    assert issues(T2V, t2v(prompt=prompt)) == {"prompt": "has no visible character (only invisible or combining marks)"}


@pytest.mark.parametrize("prompt", ["é", "☕", "a\u200b", "\u0301a", "日本"])
def test_a_prompt_with_one_visible_character_is_fine(prompt: str) -> None:
    assert issues(T2V, t2v(prompt=prompt)) == {}


@pytest.mark.parametrize("value", [0, 1, 0.5, 0.0, 1.0])
def test_float_type_accepts_int_and_float(value: float) -> None:
    """The published schema's non-standard type "float" accepts integers and floats in range."""
    assert issues(I2V, i2v(cfg_scale=value)) == {}


def test_unknown_field_did_you_mean() -> None:
    """An unknown field is rejected with the nearest known name."""
    assert issues(T2V, t2v(duraton=5)) == {"duraton": "unknown field `duraton`; did you mean `duration`?"}
    assert "known fields:" in issues(T2V, t2v(zzz=1))["zzz"]


def test_audio_flag_maps_across_families() -> None:
    """`generate_audio` on text-to-video suggests `sound`, and the reverse."""
    assert issues(T2V, t2v(generate_audio=True)) == {
        "generate_audio": "unknown field `generate_audio`; did you mean `sound`?"}
    assert issues(I2V, i2v(sound=True)) == {"sound": "unknown field `sound`; did you mean `generate_audio`?"}


def test_aspect_ratio_only_on_t2v() -> None:
    """Image-to-video takes no aspect_ratio (the image decides)."""
    assert "aspect_ratio" in issues(I2V, i2v(aspect_ratio="16:9"))


def test_multi_prompt_sum_uses_explicit_duration() -> None:
    """Segment durations must add up to the job's duration."""
    ok = [{"prompt": "a", "duration": 4}, {"prompt": "b", "duration": 4}]
    assert issues(T2V, t2v(duration=8, multi_prompt=ok)) == {}
    message = issues(T2V, t2v(duration=9, multi_prompt=ok))["multi_prompt"]
    assert "add up to 8 s but duration is 9 s" in message


def test_multi_prompt_sum_uses_default_duration() -> None:
    """Without a duration the schema default counts: 10 s for image-to-video, 5 s for text-to-video."""
    assert issues(I2V, i2v(multi_prompt=[{"prompt": "a", "duration": 5}, {"prompt": "b", "duration": 5}])) == {}
    message = issues(I2V, i2v(multi_prompt=[{"prompt": "a", "duration": 5}]))["multi_prompt"]
    assert "duration is 10 s (the default)" in message
    assert issues(T2V, t2v(multi_prompt=[{"prompt": "a", "duration": 5}])) == {}
    assert "multi_prompt" in issues(T2V, t2v(multi_prompt=[{"prompt": "a", "duration": 6}]))


def test_multi_prompt_empty_list_has_no_sum_rule() -> None:
    """An empty multi_prompt list is the same as none."""
    assert issues(T2V, t2v(duration=7, multi_prompt=[])) == {}


def test_multi_prompt_segments_checked() -> None:
    """Each segment needs a prompt; segment fields are typed and ranged; unknown keys are rejected."""
    found = issues(T2V, t2v(duration=6, multi_prompt=[{"duration": 3}, {"prompt": "b", "duration": 3}]))
    assert found == {"multi_prompt[0].prompt": "each segment needs a prompt"}
    found = issues(T2V, t2v(multi_prompt=[{"prompt": "a", "duration": 2.5}]))
    assert "must be an integer" in found["multi_prompt[0].duration"]
    found = issues(T2V, t2v(multi_prompt=[{"prompt": "a", "duration": 20}]))
    assert "between 3 and 15" in found["multi_prompt[0].duration"]
    found = issues(T2V, t2v(multi_prompt=[{"prompt": "a", "duraton": 5}]))
    assert "did you mean `duration`" in found["multi_prompt[0].duraton"]
    found = issues(T2V, t2v(multi_prompt=["a"]))
    assert "must be a mapping" in found["multi_prompt[0]"]


def test_items_without_properties_wrapper() -> None:
    """text-to-video's multi_prompt.items has no `properties` wrapper yet its fields are enforced."""
    assert "properties" not in T2V.schema["properties"]["multi_prompt"]["items"]
    found = issues(T2V, t2v(multi_prompt=[{"prompt": 5, "duration": 5}]))
    assert "must be a string" in found["multi_prompt[0].prompt"]


def test_elements() -> None:
    """Elements: at most 3, URL fields checked, unknown keys rejected."""
    element = {"frontal_image_url": IMG}
    assert issues(I2V, i2v(elements=[element] * 3)) == {}
    assert "at most 3" in issues(I2V, i2v(elements=[element] * 4))["elements"]
    found = issues(I2V, i2v(elements=[{"frontal_image_url": "not a url"}]))
    assert "https URL" in found["elements[0].frontal_image_url"]
    found = issues(I2V, i2v(elements=[{"reference_image_urls": [IMG, "ftp://x/y"]}]))
    assert "https URL" in found["elements[0].reference_image_urls[1]"]
    found = issues(I2V, i2v(elements=[{"reference_image_urls": IMG}]))
    assert "must be a list" in found["elements[0].reference_image_urls"]
    found = issues(I2V, i2v(elements=[{"video": IMG}]))
    assert "did you mean `video_url`" in found["elements[0].video"]


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://example.com/a.png", True),
        ("https://example.com:8443/a.png?x=1", True),
        ("https://8.8.8.8/a.png", True),
        ("https://[2606:4700::1]/a.png", True),
        ("http://example.com/a.png", False),
        ("ftp://example.com/a.png", False),
        ("example.com/a.png", False),
        ("/home/me/a.png", False),
        ("https:///a.png", False),
        ("https://", False),
        ("https://exa mple.com/a.png", False),
        ("https://[::1/a.png", False),
        ("file:///etc/passwd", False),
        ("", False),
    ],
)
def test_url_fields(url: str, ok: bool) -> None:
    """Media fields must be https URLs with a host."""
    found = issues(I2V, i2v(start_image_url=url))
    assert (found == {}) is ok, found


@pytest.mark.parametrize("field", ["start_image_url", "frontal_image_url", "reference_image_urls", "video_url"])
def test_http_url_is_rejected_in_every_media_field(field: str) -> None:
    """An http:// media URL is refused wherever it is written, saying why (RunComfy fetches it over the internet)."""
    url = "http://example.com/a.png"
    if field == "start_image_url":
        found, where = issues(I2V, i2v(start_image_url=url)), field
    elif field == "reference_image_urls":
        found, where = issues(I2V, i2v(elements=[{field: [IMG, url]}])), f"elements[0].{field}[1]"
    else:
        found, where = issues(I2V, i2v(elements=[{field: url}])), f"elements[0].{field}"
    assert found == {where: f"must be an https URL (RunComfy fetches it from the internet), got `{url}`"}


@pytest.mark.parametrize(
    "url",
    [
        "https://localhost/a.png",
        "https://LocalHost./a.png",
        "https://cam.localhost/a.png",
        "https://nas.local/a.png",
        "https://127.0.0.1/a.png",
        "https://127.0.0.1:8443/a.png",
        "https://10.1.2.3/a.png",
        "https://172.16.0.9/a.png",
        "https://192.168.1.20/a.png",
        "https://169.254.169.254/latest/meta-data",
        "https://0.0.0.0/a.png",
        "https://[::1]/a.png",
        "https://[fd00::1]/a.png",
        "https://[::ffff:192.168.0.1]/a.png",
        "https://2130706433/a.png",
        "https://0x7f.1/a.png",
    ],
)
def test_local_address_is_rejected(url: str) -> None:
    """A media URL on this machine or the local network is refused: RunComfy could never fetch it."""
    found = issues(I2V, i2v(start_image_url=url))
    assert found == {"start_image_url": f"RunComfy cannot reach a local address (got `{url}`)"}


@pytest.mark.parametrize("url", ["https://e.com:99999/a.png", "https://e.com:abc/a.png", "https://e.com:0/a.png"])
def test_invalid_port_is_a_problem_not_a_crash(url: str) -> None:
    """A URL with an impossible port is one problem, never an exception."""
    assert issues(I2V, i2v(start_image_url=url)) == {"start_image_url": f"has an invalid port (got `{url}`)"}


def test_unreadable_field_skips_rules_that_depend_on_it() -> None:
    """A field that could not be read gets no second, misleading problem: no sum against a default, no "missing"."""
    segments = [{"prompt": "a", "duration": 3}]
    assert "multi_prompt" in issues(I2V, i2v(multi_prompt=segments))  # 3 s against the default 10 s
    found = validate_input(I2V, i2v(multi_prompt=segments), unreadable=frozenset({"duration"}))
    assert found == []
    assert validate_input(I2V, {"prompt": "a"}, unreadable=frozenset({"start_image_url"})) == []
    found = validate_input(I2V, i2v(duration=99, cfg_scale=7), unreadable=frozenset({"duration"}))
    assert [issue.field for issue in found] == ["cfg_scale"]


def test_input_must_be_mapping() -> None:
    """A non-mapping input is one problem, for known and unknown models alike."""
    assert validate_input(T2V, [1])[0].message.startswith("the input must be a mapping")
    assert validate_input(None, "x")[0].message.startswith("the input must be a mapping")


def test_unknown_model_checks_json_only() -> None:
    """With an unknown model (--allow-unknown-model) any JSON object passes, nothing else."""
    assert validate_input(None, {"anything": [1, {"b": None}], "x": 1.5}) == []
    found = {i.field: i.message for i in validate_input(None, {"a": {1: 2}, "b": float("inf"), "c": object()})}
    assert set(found) == {"a.1", "b", "c"}


def test_effective_input_fills_defaults_only_for_display() -> None:
    """effective_input fills schema defaults without changing the input it was given."""
    given = {"prompt": "x"}
    full = effective_input(T2V, given)
    assert full["duration"] == 5 and full["sound"] is True and full["aspect_ratio"] == "16:9"
    assert given == {"prompt": "x"}
    assert effective_input(I2V, {"prompt": "x", "duration": 4})["duration"] == 4


@pytest.mark.parametrize(
    ("field", "text", "value"),
    [
        ("duration", "5", 5),
        ("duration", " 7 ", 7),
        ("cfg_scale", "0.5", 0.5),
        ("cfg_scale", "1", 1),
        ("sound", "TRUE", True),
        ("sound", "no", False),
        ("sound", "1", True),
        ("sound", "0", False),
        ("prompt", " a cat ", " a cat "),
        ("multi_prompt", '[{"prompt": "a", "duration": 5}]', [{"prompt": "a", "duration": 5}]),
        ("unknown_column", "5", "5"),
    ],
)
def test_coerce_text(field: str, text: str, value: object) -> None:
    """CSV cells become the schema's type for their field."""
    result = coerce_text(T2V, field, text)
    assert result == value and type(result) is type(value)


@pytest.mark.parametrize(
    ("field", "text", "needle"),
    [
        ("duration", "5.5", "expected an integer"),
        ("duration", "five", "expected an integer"),
        ("cfg_scale", "x", "expected a number"),
        ("cfg_scale", "nan", "expected a number"),
        ("cfg_scale", "1e999", "finite"),
        ("sound", "maybe", "true/false/yes/no/1/0"),
        ("multi_prompt", "[{", "expected JSON a list"),
        ("multi_prompt", '{"a": 1}', "expected JSON a list, got a mapping"),
        ("multi_prompt", "[" * 600 + "]" * 600, "nested more than 50 levels"),
        ("multi_prompt", "[" * 100_000 + "]" * 100_000, "expected JSON a list"),
        ("multi_prompt", '[{"prompt": "first", "prompt": "second", "duration": 5}]', "duplicate key 'prompt'"),
    ],
)
def test_coerce_text_errors(field: str, text: str, needle: str) -> None:
    """A cell that cannot be converted raises ValueError with a one-line message."""
    with pytest.raises(ValueError) as caught:
        coerce_text(T2V, field, text)
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def test_coerce_text_unknown_model() -> None:
    """Cells for an unknown model stay strings."""
    assert coerce_text(None, "duration", "5") == "5"
