"""CSV manifests: typed cells, empty cells, BOM, ragged rows, duplicate headers and their locations."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun.errors import ManifestError
from batchrun.manifest import load_campaign

T2V = "kling/kling-3.0/pro/text-to-video"
I2V = "kling/kling-3.0/standard/image-to-video"


def csv_file(tmp_path: Path, text: str | bytes, name: str = "jobs.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def lines(path: Path, **options: object) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_campaign(path, **options)  # type: ignore[arg-type]
    return caught.value.lines()


def test_typed_cells(tmp_path: Path) -> None:
    """Cells become integers, numbers, booleans and JSON by the schema type of their column."""
    path = csv_file(tmp_path, (
        'prompt,duration,cfg_scale,sound,multi_prompt,aspect_ratio\n'
        'a cat,6,0.5,YES,"[{""prompt"": ""x"", ""duration"": 3}, {""prompt"": ""y"", ""duration"": 3}]",9:16\n'
    ))
    (job,) = load_campaign(path, model=T2V).jobs()
    assert job.input == {"prompt": "a cat", "duration": 6, "cfg_scale": 0.5, "sound": True,
                         "multi_prompt": [{"prompt": "x", "duration": 3}, {"prompt": "y", "duration": 3}],
                         "aspect_ratio": "9:16"}


def test_empty_cells_are_not_set(tmp_path: Path) -> None:
    """An empty cell leaves the field unset, so defaults (or the schema default) apply."""
    path = csv_file(tmp_path, "prompt,duration,sound\na,,\nb, ,false\n")
    jobs = list(load_campaign(path, model=T2V).jobs())
    assert [j.input for j in jobs] == [{"prompt": "a"}, {"prompt": "b", "sound": False}]


def test_bom_and_stripped_headers(tmp_path: Path) -> None:
    """A UTF-8 BOM is accepted and header names are stripped."""
    path = csv_file(tmp_path, "\ufeff prompt , duration \nhello,4\n".encode("utf-8"))
    (job,) = load_campaign(path, model=T2V).jobs()
    assert job.input == {"prompt": "hello", "duration": 4}


def test_a_doubled_bom_is_not_part_of_the_first_header(tmp_path: Path) -> None:
    """A file saved twice with a BOM (two U+FEFF) still has a `prompt` column."""
    path = csv_file(tmp_path, "\ufeff\ufeffprompt,duration\nhello,4\n".encode("utf-8"))
    (job,) = load_campaign(path, model=T2V).jobs()
    assert job.input == {"prompt": "hello", "duration": 4}


@pytest.mark.parametrize("separator", [";", "\t"])
def test_semicolon_and_tab_separated_files_are_read(tmp_path: Path, separator: str) -> None:
    """What a spreadsheet saves as CSV where the decimal mark is a comma (`;`), or a TSV: a header
    row without a comma but with that separator decides it; a comma in a cell is then text."""
    text = separator.join(["prompt", "duration"]) + "\n" + separator.join(["a cat, at night", "4"]) + "\n"
    (job,) = load_campaign(csv_file(tmp_path, text), model=T2V).jobs()
    assert job.input == {"prompt": "a cat, at night", "duration": 4}


def test_a_comma_in_the_header_keeps_commas_as_the_separator(tmp_path: Path) -> None:
    """A semicolon in a cell of a comma-separated file is text, as before."""
    path = csv_file(tmp_path, "prompt,duration\n\"a cat; a dog\",4\n")
    (job,) = load_campaign(path, model=T2V).jobs()
    assert job.input == {"prompt": "a cat; a dog", "duration": 4}


def test_a_comma_inside_a_quoted_header_name_does_not_decide_the_separator(tmp_path: Path) -> None:
    """`"_notes, misc"` is one (ignored) column name of a semicolon-separated file."""
    path = csv_file(tmp_path, 'prompt;duration;"_notes, misc"\nhello, world;4;note\n')
    (job,) = load_campaign(path, model=T2V).jobs()
    assert job.input == {"prompt": "hello, world", "duration": 4}


@pytest.mark.parametrize("first", ["sep=;", "\ufeffsep=;", '"sep=;"', "SEP=;"])
def test_excels_sep_line_names_the_separator_and_is_no_row(tmp_path: Path, first: str) -> None:
    """Excel's `sep=;` first line chooses the separator (even with commas in the header) and is
    not read as the header; later lines keep their real line numbers."""
    path = csv_file(tmp_path, f"{first}\r\nprompt;duration\r\nred, blue;4\r\ngreen;x\r\n")
    [line] = lines(path, model=T2V)
    assert line.startswith(f"{path}:4:2: duration: expected an integer")
    path.write_text(f"{first}\nprompt;duration\nred, blue;4\n", encoding="utf-8")
    (job,) = load_campaign(path, model=T2V).jobs()
    assert job.input == {"prompt": "red, blue", "duration": 4}


def test_a_tsv_file_is_a_manifest_too(tmp_path: Path) -> None:
    """`batchrun run shots.tsv` reads it as a table, not as YAML, separated by tabs whatever
    the header holds (TSV does not quote: `_notes, misc` is one column name)."""
    path = csv_file(tmp_path, 'prompt\tduration\n"a, b"\t5\n', name="shots.tsv")
    campaign = load_campaign(path, model=T2V)
    assert campaign.name == "shots" and [job.input for job in campaign.jobs()] == [{"prompt": "a, b", "duration": 5}]
    path.write_text("prompt\t_notes, misc\na cat, a dog\tx\n", encoding="utf-8")
    assert [job.input for job in load_campaign(path, model=T2V).jobs()] == [{"prompt": "a cat, a dog"}]


def test_spaces_after_the_separator_around_a_choice_or_a_url_are_layout(tmp_path: Path) -> None:
    """`prompt, start_image_url` with a space after each comma, as people type CSV: the URL and
    the choice are read without the spaces around them (they were refused); free text is sent
    as written."""
    path = csv_file(tmp_path, "prompt, start_image_url, shot_type\nA cat, https://ex.com/a.png , customize\n")
    (job,) = load_campaign(path, model=I2V).jobs()
    assert job.input == {"prompt": "A cat", "start_image_url": "https://ex.com/a.png", "shot_type": "customize"}
    path = csv_file(tmp_path, "prompt,aspect_ratio\n a dog , 9:16\n")
    (job,) = load_campaign(path, model=T2V).jobs()
    assert job.input == {"prompt": " a dog ", "aspect_ratio": "9:16"}


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
def test_every_line_ending_reads_the_same_rows_at_the_same_lines(tmp_path: Path, end: str) -> None:
    """Unix, Windows and old Mac line endings, a quoted cell spanning two lines: the same jobs,
    and a later mistake is told at its real line."""
    rows = ["prompt,duration", '"a cat', 'at night",4', "", "a dog,x"]
    path = csv_file(tmp_path, end.join(rows) + end)
    [line] = lines(path, model=T2V)
    assert line.startswith(f"{path}:5:2: duration: expected an integer")
    path.write_text(end.join(rows[:-1]) + end, encoding="utf-8", newline="")
    (job,) = load_campaign(path, model=T2V).jobs()
    assert job.input == {"prompt": f"a cat{end}at night", "duration": 4}


def test_a_quote_never_closed_is_shown_even_after_a_thousand_row_problems(tmp_path: Path) -> None:
    """The problem that explains the file (a quote left open on its last row) is kept when the
    list is cut at 1,000 problems, though the rows before it were read first."""
    rows = "".join(f"a{i},x\n" for i in range(1200))
    path = csv_file(tmp_path, f'prompt,duration\n{rows}"never closed,4\n')
    found = lines(path, model=T2V)
    assert any(f"{path}:1202:" in line and "never closed" in line for line in found)
    assert any(line.endswith("more not shown (fix these first)") for line in found)


def test_a_control_character_in_a_header_is_located(tmp_path: Path) -> None:
    """An invisible control character in a column name is named at its column, not reported as
    an unknown field that looks like a known one."""
    path = csv_file(tmp_path, "prompt,dur\x01ation\nhello,4\n")
    problems = lines(path, model=T2V)
    assert problems == [f"{path}:1:2: the header of column 2 holds the control character U+0001 at character 4"]


def test_id_model_takes_columns(tmp_path: Path) -> None:
    """`id`, `model` and `takes` columns set the job's identity, model and number of takes."""
    path = csv_file(tmp_path, f"id,model,takes,prompt,start_image_url\nhero,{I2V},2,a,https://e.com/a.png\nb,,,c,\n")
    jobs = list(load_campaign(path, model=T2V).jobs())
    assert [(j.key, j.model) for j in jobs] == [("hero-t1", I2V), ("hero-t2", I2V), ("b-t1", T2V)]
    assert jobs[0].input == {"prompt": "a", "start_image_url": "https://e.com/a.png"}


def test_multiline_cells_keep_row_lines(tmp_path: Path) -> None:
    """A quoted cell spanning lines does not shift the line numbers of later rows."""
    path = csv_file(tmp_path, 'prompt,duration\n"two\nlines",5\nthree,99\n')
    assert lines(path, model=T2V) == [f"{path}:4:2: duration: must be between 3 and 15 (got 99)"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("prompt,duration\na,five\n", ":2:2: duration: expected an integer, got `five`"),
        ("prompt,cfg_scale\na,high\n", ":2:2: cfg_scale: expected a number, got `high`"),
        ("prompt,sound\na,maybe\n", ":2:2: sound: expected true/false/yes/no/1/0, got `maybe`"),
        ("prompt,multi_prompt\na,[oops\n", ":2:2: multi_prompt: expected JSON a list"),
        ("prompt,duration\na,5,extra\n", ":2:3: row has 3 cells but the header has 2 columns"),
        ("prompt,prompt\na,b\n", ":1:2: prompt: duplicate column `prompt` (also column 1)"),
        ("prompt,takes\na,0\n", ":2:2: takes: must be a whole number >= 1"),
        ("prompt,takes\na,x\n", ":2:2: takes: must be a whole number >= 1"),
        ("prompt,id\na,b c\n", ":2:2: id: id `b c` may only use"),
        ("prompt,model\na,acme/x\n", ":2:2: model: unknown model `acme/x`"),
        ("prompt\n", ":1:1: the CSV file has no rows"),
        ("", ":1:1: the CSV file is empty"),
        ("prompt,durration\na,5\n", ":1:2: durration: unknown field `durration`; did you mean `duration`?"),
        ("prompt\n{oops\n", ":2:1: prompt: unbalanced `{`"),
        ("prompt\nsame\nsame\n", ":3:1: duplicate job (same model and input as line 2)"),
        ("prompt,duration\na,1_0\n", ":2:2: duration: expected an integer, got `1_0`"),
        ("prompt,cfg_scale\na,0_5\n", ":2:2: cfg_scale: expected a number, got `0_5`"),
        ("prompt,duration\na,\u0665\n", ":2:2: duration: expected an integer"),
        ("prompt,takes\na,1_0\n", ":2:2: takes: must be a whole number >= 1 (got `1_0`)"),
        ("prompt,duration\nred \x1b[31mcat,5\n", ":2:1: prompt: the cell holds the control character U+001B at character 5"),
        ("prompt\n\"a\x00b\"\n", ":2:1: prompt: the cell holds the control character U+0000 at character 2"),
    ],
)
def test_cell_problems_are_located(tmp_path: Path, text: str, expected: str) -> None:
    """Every CSV problem names the file, the row's line and the column."""
    path = csv_file(tmp_path, text)
    found = lines(path, model=T2V)
    assert found[0].startswith(f"{path}{expected}"), found


def test_tabs_and_line_breaks_in_a_cell_are_kept(tmp_path: Path) -> None:
    """Only control characters are refused: a tab or a line break inside a quoted cell is text."""
    path = csv_file(tmp_path, 'prompt\n"a\tb\r\nc"\n')
    (job,) = load_campaign(path, model=T2V).jobs()
    assert job.input["prompt"] == "a\tb\r\nc"


def test_unknown_column_reported_once(tmp_path: Path) -> None:
    """An unknown column is one problem at the header, not one per row."""
    path = csv_file(tmp_path, "prompt,colour\n" + "".join(f"p{i},red\n" for i in range(50)))
    assert lines(path, model=T2V) == [f"{path}:1:2: colour: unknown field `colour`; known fields: "
                                      "prompt, negative_prompt, duration, aspect_ratio, cfg_scale, sound, "
                                      "multi_prompt, shot_type"]


def test_not_utf8(tmp_path: Path) -> None:
    """Non-UTF-8 bytes are a problem at the line of the first bad byte."""
    path = csv_file(tmp_path, b"prompt\nok\ncaf\xe9\n")
    assert lines(path, model=T2V) == [f"{path}:3:4: not UTF-8 text (byte 0xe9); save the file as UTF-8"]


def test_missing_csv(tmp_path: Path) -> None:
    """A `csv:` naming a missing file is a problem at that key's line."""
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"model: {T2V}\ncsv: nope.csv\n")
    found = lines(manifest)
    assert found[0].startswith(f"{manifest}:2:6: csv: cannot read the CSV file")


def test_unreadable_cell_gives_one_problem_not_two(tmp_path: Path) -> None:
    """A bad duration cell is reported once, with no follow-up about segments not adding up to the default."""
    path = csv_file(tmp_path, 'prompt,duration,multi_prompt\na,abc,"[{""prompt"": ""x"", ""duration"": 3}]"\n')
    assert lines(path, model=T2V) == [f"{path}:2:2: duration: expected an integer, got `abc`"]


def test_unreadable_cells_do_not_make_rows_duplicates(tmp_path: Path) -> None:
    """Two rows that differ only in unreadable cells get one problem each, not a "duplicate job"."""
    path = csv_file(tmp_path, "prompt,duration\na,abc\na,xyz\n")
    assert lines(path, model=T2V) == [f"{path}:2:2: duration: expected an integer, got `abc`",
                                      f"{path}:3:2: duration: expected an integer, got `xyz`"]


def test_unreadable_cell_does_not_hide_other_problems_of_its_row(tmp_path: Path) -> None:
    """The rest of a row with an unreadable cell is still checked."""
    path = csv_file(tmp_path, "prompt,duration,cfg_scale\na,abc,7\n")
    assert lines(path, model=T2V) == [f"{path}:2:2: duration: expected an integer, got `abc`",
                                      f"{path}:2:3: cfg_scale: must be between 0 and 1 (got 7)"]


def test_csv_media_url_must_be_https(tmp_path: Path) -> None:
    """An http:// image URL in a CSV cell is refused at its cell."""
    path = csv_file(tmp_path, "prompt,start_image_url\na,http://e.com/a.png\n")
    assert lines(path, model=I2V) == [f"{path}:2:2: start_image_url: must be an https URL (RunComfy fetches it "
                                      "from the internet), got `http://e.com/a.png`"]
