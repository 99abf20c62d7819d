"""``{name}`` templates: substitution, brace escapes and the mistakes users make."""

from __future__ import annotations

import pytest

from batchrun.manifest.templates import TemplateError, check, compile_template, render_text, render_value


def test_substitution() -> None:
    """Variables are replaced by their values, everything else kept."""
    assert render_text("a {style} cat at {ratio}", {"style": "noir", "ratio": "16:9"}) == "a noir cat at 16:9"
    assert render_text("no braces", {}) == "no braces"
    assert render_text("{a}{b}", {"a": "1", "b": "2"}) == "12"


def test_escapes() -> None:
    """`{{` and `}}` stand for literal braces."""
    assert render_text("json {{\"a\": {x}}}", {"x": "1"}) == 'json {"a": 1}'
    assert render_text("{{x}}", {}) == "{x}"
    assert render_text("}}{{", {}) == "}{"


def test_values_are_not_rendered_again() -> None:
    """A value containing braces is inserted as is."""
    assert render_text("{a}", {"a": "{b}"}) == "{b}"


@pytest.mark.parametrize("text", ["a {b", "a } b", "{a{b}}", "{", "}", "a {b c} d", "{}", "{1x}"])
def test_malformed(text: str) -> None:
    """Unbalanced braces and non-names are errors telling how to write a literal brace."""
    with pytest.raises(TemplateError) as caught:
        compile_template(text)
    assert "{{" in str(caught.value) or "literal" in str(caught.value)


def test_unknown_variable() -> None:
    """An unknown variable is named with the list of known ones."""
    with pytest.raises(TemplateError) as caught:
        check("a {styl}", ["style", "ratio"])
    assert str(caught.value) == "unknown template variable `styl`; known: ratio, style"
    assert check("a {style}", ["style"]) == ["style"]


def test_render_value_recurses() -> None:
    """Strings inside lists and mappings are rendered; other values and the original stay unchanged."""
    original = {"segments": [{"prompt": "{s}", "duration": 3}], "n": 1}
    assert render_value(original, {"s": "x"}) == {"segments": [{"prompt": "x", "duration": 3}], "n": 1}
    assert original["segments"][0]["prompt"] == "{s}"
