"""The models batchrun knows: the six Kling 3.0 ids and their published input schemas.

Pure: the schemas ship inside the package (``batchrun/schemas``) and are read once with
``importlib.resources``, so an installed wheel works the same as a checkout.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from types import MappingProxyType
from typing import Any

TIERS = ("standard", "pro", "4k")
TASKS = ("text-to-video", "image-to-video")

#: which boolean switches audio on, per task (the two published schemas disagree)
AUDIO_FIELDS = {"text-to-video": "sound", "image-to-video": "generate_audio"}


@dataclass(frozen=True)
class ModelInfo:
    """One RunComfy model id and what batchrun knows about its input."""

    id: str  #: e.g. ``kling/kling-3.0/pro/text-to-video``
    tier: str  #: ``standard`` | ``pro`` | ``4k``; the price row
    task: str  #: ``text-to-video`` | ``image-to-video``
    schema: Mapping[str, Any]  #: the published input JSON schema document
    audio_field: str  #: ``sound`` (text-to-video) or ``generate_audio`` (image-to-video)
    default_duration: int  #: the schema's default ``duration`` (seconds)

    @property
    def properties(self) -> Mapping[str, Any]:
        """The schema's top-level fields."""
        return self.schema.get("properties", {})


def _load_schema(task: str) -> Mapping[str, Any]:
    text = (files("batchrun") / "schemas" / f"kling-3.0-{task}.input.json").read_text(encoding="utf-8")
    return json.loads(text)


def _build() -> Mapping[str, ModelInfo]:
    models: dict[str, ModelInfo] = {}
    for task in TASKS:
        schema = _load_schema(task)
        default_duration = int(schema["properties"]["duration"]["default"])
        for tier in TIERS:
            model_id = f"kling/kling-3.0/{tier}/{task}"
            models[model_id] = ModelInfo(
                id=model_id,
                tier=tier,
                task=task,
                schema=schema,
                audio_field=AUDIO_FIELDS[task],
                default_duration=default_duration,
            )
    return MappingProxyType(models)


MODELS: Mapping[str, ModelInfo] = _build()


def lookup(model_id: str) -> ModelInfo | None:
    """The model with this exact id, or None when batchrun does not know it."""
    return MODELS.get(model_id) if isinstance(model_id, str) else None


def suggest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate the user most likely meant by ``word`` (did-you-mean), or None."""
    pool = [c for c in candidates if isinstance(c, str)]
    if not isinstance(word, str) or not pool:
        return None
    folded = {c.casefold(): c for c in pool}
    if word.casefold() in folded:
        return folded[word.casefold()]
    match = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    if match:
        return match[0]
    match = difflib.get_close_matches(word.casefold(), list(folded), n=1, cutoff=0.6)
    return folded[match[0]] if match else None
