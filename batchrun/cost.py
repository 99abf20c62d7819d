"""What a job will cost: one price table (per second of output video) the user can override.

Pure except ``load_price_file``. Prices change, so they live in exactly one table: the public
listing from API.md, then the manifest's ``prices:``, then a ``--prices FILE`` on top.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from batchrun.catalog import TIERS, lookup, suggest
from batchrun.errors import ConfigError
from batchrun.inputfiles import read_input_file
from batchrun.validation import unique_keys


@dataclass(frozen=True)
class Price:
    """USD per second of output video, without and with audio."""

    silent: float
    audio: float

    def to_dict(self) -> dict[str, float]:
        return {"silent": self.silent, "audio": self.audio}


_DEFAULTS = {
    "standard": Price(silent=0.084, audio=0.126),
    "pro": Price(silent=0.112, audio=0.168),
    "4k": Price(silent=0.42, audio=0.42),
}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return float(value)


class PriceTable:
    """Prices by tier, with optional overrides for one full model id."""

    def __init__(self, tiers: Mapping[str, Price], models: Mapping[str, Price] | None = None,
                 written: tuple[tuple[str, Any, str], ...] = ()) -> None:
        self._tiers = MappingProxyType(dict(tiers))
        self._models = MappingProxyType(dict(models or {}))
        #: the overrides as written (key, value, source), in order: ``overlay`` replays them, so a
        #: price file that sets only `audio` keeps the `silent` the manifest set
        self._written = written
        self._overridden = frozenset(key for key, _, _ in written)  #: keys changed from the public listing

    @classmethod
    def default(cls) -> PriceTable:
        """The public listing from API.md."""
        return cls(_DEFAULTS)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PriceTable) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"PriceTable({self.to_dict()!r})"

    def overridden_models(self) -> frozenset[str]:
        """The full model ids given their own price (by a manifest or a price file)."""
        return frozenset(key for key in self._overridden if "/" in key)

    def _current(self, key: str) -> Price | None:
        return self._models.get(key) if "/" in key else self._tiers.get(key)

    def with_overrides(self, mapping: Mapping[str, Any], *, source: str) -> PriceTable:
        """A new table with ``mapping`` applied: keys are a tier or a full model id, values
        ``{silent: x, audio: y}`` (either may be left out when the key already has a price) or one
        number for both. A bad shape raises ConfigError naming ``source`` and the key."""
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"{source}: prices must be a mapping of tier or model id to "
                              f"{{silent: USD/s, audio: USD/s}}")
        tiers, models = dict(self._tiers), dict(self._models)
        written = list(self._written)
        for key, value in mapping.items():
            if not isinstance(key, str) or not key:
                raise ConfigError(f"{source}: price key {key!r} must be a tier ({', '.join(TIERS)}) or a model id")
            if "/" not in key and key not in TIERS:
                hint = suggest(key, TIERS)
                extra = f"; did you mean `{hint}`?" if hint else ""
                raise ConfigError(f"{source}: prices.{key}: unknown tier `{key}` (known: {', '.join(TIERS)}; "
                                  f"or use a full model id){extra}")
            base = self._current(key)
            if base is None and "/" in key:
                info = lookup(key)
                base = tiers.get(info.tier) if info else None
            price = _parse_price(value, base, f"{source}: prices.{key}")
            (models if "/" in key else tiers)[key] = price
            written.append((key, value, source))
        return PriceTable(tiers, models, tuple(written))

    def overlay(self, other: PriceTable) -> PriceTable:
        """This table with ``other``'s overrides applied on top (``--prices`` over the manifest's):
        what ``other`` left out of a price (`silent` or `audio`) stays as this table has it."""
        table = self
        for key, value, source in other._written:
            table = table.with_overrides({key: value}, source=source)
        return table

    def price_for(self, model_id: str) -> Price | None:
        """The price of ``model_id``: its own override first, then its tier; None when unknown."""
        if model_id in self._models:
            return self._models[model_id]
        info = lookup(model_id)
        return self._tiers.get(info.tier) if info else None

    def estimate(self, model_id: str, input: Mapping[str, Any]) -> float | None:
        """USD for one generation: duration (schema default when absent) x price (audio on
        unless the model's audio flag is false); None when the model or duration is unknown."""
        price = self.price_for(model_id)
        if price is None:
            return None
        info = lookup(model_id)
        duration = input.get("duration", info.default_duration if info else None)
        if isinstance(duration, bool) or not isinstance(duration, (int, float)):
            return None
        audio_field = info.audio_field if info else None
        audio = input.get(audio_field, True) if audio_field else True
        rate = price.silent if audio is False else price.audio
        return round(duration * rate, 6)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: ``{"tiers": {tier: {silent, audio}}, "models": {id: {silent, audio}}}``."""
        return {
            "tiers": {k: v.to_dict() for k, v in self._tiers.items()},
            "models": {k: v.to_dict() for k, v in self._models.items()},
        }


def _parse_price(value: Any, base: Price | None, where: str) -> Price:
    single = _number(value)
    if single is not None:
        return Price(silent=single, audio=single)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected {{silent: USD/s, audio: USD/s}} or one number, got {value!r}")
    unknown = [k for k in value if k not in ("silent", "audio")]
    if unknown:
        hint = suggest(str(unknown[0]), ("silent", "audio"))
        extra = f"; did you mean `{hint}`?" if hint else ""
        raise ConfigError(f"{where}: unknown key `{unknown[0]}` (expected silent, audio){extra}")
    parsed: dict[str, float] = {}
    for name in ("silent", "audio"):
        if name in value:
            number = _number(value[name])
            if number is None:
                raise ConfigError(f"{where}.{name}: expected a number >= 0 (USD per second), got {value[name]!r}")
            parsed[name] = number
        elif base is not None:
            parsed[name] = getattr(base, name)
        else:
            raise ConfigError(f"{where}: `{name}` is missing (no tier price to fall back on)")
    return Price(**parsed)


_MAX_PRICE_FILE = 1 << 20  #: a price table is a few lines; a bigger file is a mistake


def load_price_file(path: Path) -> PriceTable:
    """The default table with the overrides of a YAML or JSON file; ConfigError naming the file."""
    path = Path(path)
    data, why = read_input_file(path, limit=_MAX_PRICE_FILE)
    if data is None:
        raise ConfigError(f"{path}: cannot read the price file ({why})")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the price file is not UTF-8 text") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text, object_pairs_hook=unique_keys)
        except ValueError as error:
            raise ConfigError(f"{path}: cannot parse the price file: {str(error).splitlines()[0]}") from None
        locate = None
    else:  # read like a manifest: YAML 1.2 numbers (`010` is 10, `1e-1` is 0.1), duplicate keys refused
        from batchrun.manifest import yamlnodes  # the manifest package needs this module first

        document = yamlnodes.parse(text, str(path))
        if document.problems:
            first = document.problems[0]
            raise ConfigError(f"{first.location}: cannot parse the price file: {first.message}")
        data, locate = document.value, document.locate
    if data is None:
        data = {}
    prefix: tuple[str, ...] = ()
    if isinstance(data, Mapping) and set(data) == {"prices"}:
        data, prefix = data["prices"], ("prices",)
    if locate is None or not isinstance(data, Mapping):
        return PriceTable.default().with_overrides(data, source=str(path))
    table = PriceTable.default()
    for key, value in data.items():  # one key at a time, so that a mistake is told at its line
        try:
            table = table.with_overrides({key: value}, source=str(path))
        except ConfigError as error:
            misnamed = not isinstance(key, str) or ("/" not in key and key not in TIERS)
            where = locate((*prefix, key), key=True) if misnamed else locate((*prefix, key, *_bad_half(value)))
            raise ConfigError(f"{where}: {error.message.removeprefix(f'{path}: ')}") from None
    return table


def _bad_half(value: Any) -> tuple[str, ...]:
    """The `silent` or `audio` entry of a price that is not a number >= 0, to point at its line."""
    if isinstance(value, Mapping):
        for name in ("silent", "audio"):
            if name in value and _number(value[name]) is None:
                return (name,)
    return ()
