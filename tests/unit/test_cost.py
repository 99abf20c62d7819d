"""Cost estimates: per tier, audio on/off, duration defaults and user overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchrun.cost import Price, PriceTable, load_price_file
from batchrun.errors import ConfigError

T2V_PRO = "kling/kling-3.0/pro/text-to-video"
I2V_STD = "kling/kling-3.0/standard/image-to-video"
T2V_4K = "kling/kling-3.0/4k/text-to-video"


def test_default_table() -> None:
    """The public listing from API.md is the default."""
    table = PriceTable.default()
    assert table.price_for(I2V_STD) == Price(0.084, 0.126)
    assert table.price_for(T2V_PRO) == Price(0.112, 0.168)
    assert table.price_for(T2V_4K) == Price(0.42, 0.42)
    assert table.price_for("acme/other") is None


@pytest.mark.parametrize(
    ("model", "input", "expected"),
    [
        (I2V_STD, {"duration": 5}, 5 * 0.126),
        (I2V_STD, {"duration": 5, "generate_audio": False}, 5 * 0.084),
        (I2V_STD, {}, 10 * 0.126),  # image-to-video default duration 10 s, audio on
        (T2V_PRO, {}, 5 * 0.168),  # text-to-video default duration 5 s
        (T2V_PRO, {"sound": False, "duration": 15}, 15 * 0.112),
        (T2V_PRO, {"generate_audio": False}, 5 * 0.168),  # the other family's flag does not count
        (T2V_4K, {"duration": 3, "sound": False}, 3 * 0.42),
    ],
)
def test_estimate(model: str, input: dict, expected: float) -> None:
    """The estimate is duration (schema default when absent) x the audio or silent price."""
    assert PriceTable.default().estimate(model, input) == pytest.approx(expected)


def test_estimate_unknown() -> None:
    """Unknown models and non-numeric durations give None rather than a wrong number."""
    table = PriceTable.default()
    assert table.estimate("acme/other", {"duration": 5}) is None
    assert table.estimate(T2V_PRO, {"duration": "5"}) is None


def test_overrides_by_tier_and_model() -> None:
    """A full model id override beats its tier; a partial override keeps the other price."""
    table = PriceTable.default().with_overrides(
        {"pro": {"audio": 0.2}, I2V_STD: {"silent": 0.05, "audio": 0.06}, "4k": 0.5}, source="test")
    assert table.price_for(T2V_PRO) == Price(0.112, 0.2)
    assert table.price_for(I2V_STD) == Price(0.05, 0.06)
    assert table.price_for("kling/kling-3.0/standard/text-to-video") == Price(0.084, 0.126)
    assert table.price_for(T2V_4K) == Price(0.5, 0.5)
    assert table.to_dict()["models"][I2V_STD] == {"silent": 0.05, "audio": 0.06}


def test_override_unknown_model_id() -> None:
    """Prices can be given for a model batchrun does not know (used with --allow-unknown-model)."""
    table = PriceTable.default().with_overrides({"acme/video": {"silent": 1, "audio": 2}}, source="t")
    assert table.estimate("acme/video", {"duration": 4}) == 8


@pytest.mark.parametrize(
    ("mapping", "needle"),
    [
        ({"ultra": 1}, "unknown tier `ultra`"),
        ({"prp": 1}, "did you mean `pro`"),
        ({"pro": {"silent": "x"}}, "prices.pro.silent"),
        ({"pro": {"silnet": 1}}, "did you mean `silent`"),
        ({"pro": -1}, "prices.pro"),
        ({"pro": True}, "prices.pro"),
        ({"acme/video": {"silent": 1}}, "`audio` is missing"),
        ([1, 2], "must be a mapping"),
    ],
)
def test_bad_overrides(mapping: object, needle: str) -> None:
    """A bad price shape is a ConfigError naming the source and the key."""
    with pytest.raises(ConfigError) as caught:
        PriceTable.default().with_overrides(mapping, source="prices.yaml")  # type: ignore[arg-type]
    assert caught.value.message.startswith("prices.yaml")
    assert needle in caught.value.message


def test_overlay() -> None:
    """A --prices table goes on top of manifest overrides without undoing the others."""
    manifest = PriceTable.default().with_overrides({"pro": 1, "standard": 2}, source="m")
    flag = PriceTable.default().with_overrides({"pro": 3}, source="f")
    combined = manifest.overlay(flag)
    assert combined.price_for(T2V_PRO) == Price(3, 3)
    assert combined.price_for(I2V_STD) == Price(2, 2)


def test_overlay_of_one_half_of_a_price_keeps_the_other() -> None:
    """`--prices` that sets only `audio` for a tier keeps the `silent` the manifest set for it (not the
    public listing's), and a model id's half-price falls back on the manifest's tier price."""
    manifest = PriceTable.default().with_overrides({"pro": {"silent": 0.2, "audio": 0.3}}, source="m")
    flag = PriceTable.default().with_overrides({"pro": {"audio": 0.5}, I2V_STD: {"silent": 0.01}}, source="f")
    combined = manifest.overlay(flag)
    assert combined.price_for(T2V_PRO) == Price(0.2, 0.5)
    assert combined.price_for(I2V_STD) == Price(0.01, PriceTable.default().price_for(I2V_STD).audio)
    assert combined.overridden_models() == frozenset({I2V_STD})


def test_load_price_file(tmp_path: Path) -> None:
    """Price files may be YAML or JSON; a top-level `prices:` wrapper is accepted."""
    (tmp_path / "p.yaml").write_text("prices:\n  pro: {silent: 0.1, audio: 0.2}\n")
    (tmp_path / "p.json").write_text(json.dumps({"4k": {"silent": 0.3, "audio": 0.3}}))
    assert load_price_file(tmp_path / "p.yaml").price_for(T2V_PRO) == Price(0.1, 0.2)
    assert load_price_file(tmp_path / "p.json").price_for(T2V_4K) == Price(0.3, 0.3)


@pytest.mark.parametrize("text", ["pro: [1", "{", "- 1\n- 2\n", "pro: {silent: x}\n", b"\xff\xfe"])
def test_bad_price_file(tmp_path: Path, text: str | bytes) -> None:
    """Unparseable or badly shaped price files raise ConfigError naming the file."""
    path = tmp_path / "bad.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError) as caught:
        load_price_file(path)
    assert str(path) in caught.value.message


@pytest.mark.parametrize(("text", "where"), [
    ("pro:\n  silent: 0.1\n  audio: x\n", ":3:10: prices.pro.audio: expected a number"),
    ("standard: 1\nstandrd: 1\n", ":2:1: prices.standrd: unknown tier `standrd`"),
    ("prices:\n  4k: [1]\n", ":2:7: prices.4k: expected {silent: USD/s, audio: USD/s} or one number"),
])
def test_a_mistake_in_a_price_file_is_told_at_its_line(tmp_path: Path, text: str, where: str) -> None:
    """A YAML price file's mistake names its line and column, like a manifest's."""
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_price_file(path)
    assert caught.value.message.startswith(f"{path}{where}"), caught.value.message


def test_a_json_price_file_with_a_key_twice_is_refused(tmp_path: Path) -> None:
    """`{"pro": 0.1, "pro": 5}` would silently keep 5 (as JSON does); a YAML price file refuses
    the same mistake, and so does a JSON one."""
    path = tmp_path / "prices.json"
    path.write_text('{"pro": 0.1, "pro": 5}')
    with pytest.raises(ConfigError, match="duplicate key 'pro'"):
        load_price_file(path)


def test_missing_price_file(tmp_path: Path) -> None:
    """A missing price file is a ConfigError, not an OSError."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_price_file(tmp_path / "nope.yaml")
