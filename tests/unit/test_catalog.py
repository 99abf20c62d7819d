"""The model catalog: the six Kling 3.0 ids, their schemas, audio fields and defaults."""

from __future__ import annotations

import pytest

from batchrun.catalog import MODELS, lookup, suggest

IDS = [f"kling/kling-3.0/{tier}/{task}" for tier in ("standard", "pro", "4k")
       for task in ("text-to-video", "image-to-video")]


def test_six_models() -> None:
    """Exactly the six Kling 3.0 ids are known."""
    assert sorted(MODELS) == sorted(IDS)


@pytest.mark.parametrize("model_id", IDS)
def test_model_info(model_id: str) -> None:
    """Each model knows its tier, task, audio field and default duration from its schema."""
    info = lookup(model_id)
    assert info is not None and info.id == model_id
    assert info.tier == model_id.split("/")[2]
    assert info.task == model_id.split("/")[3]
    if info.task == "text-to-video":
        assert (info.audio_field, info.default_duration) == ("sound", 5)
        assert "aspect_ratio" in info.schema["properties"]
    else:
        assert (info.audio_field, info.default_duration) == ("generate_audio", 10)
        assert info.schema["required"] == ["prompt", "start_image_url"]
    assert info.audio_field in info.schema["properties"]


def test_lookup_unknown() -> None:
    """An unknown or non-string model id gives None, not an exception."""
    assert lookup("kling/kling-2.0/pro/text-to-video") is None
    assert lookup(42) is None  # type: ignore[arg-type]


def test_suggest() -> None:
    """Did-you-mean finds near misses and case slips, and stays quiet for nonsense."""
    assert suggest("duraton", ["duration", "prompt"]) == "duration"
    assert suggest("PROMPT", ["duration", "prompt"]) == "prompt"
    assert suggest("kling/kling-3.0/pro/text2video", MODELS) == "kling/kling-3.0/pro/text-to-video"
    assert suggest("zzzzzz", ["duration", "prompt"]) is None
    assert suggest("x", []) is None
