"""CSV manifests: one job per row, each cell typed by the schema of its column's field.

Pure (takes text). Headers are stripped; an empty cell means "not set"; duplicate headers and
rows with more cells than headers are problems located at ``file:line:column``. Cells are
separated by commas, or by semicolons or tabs when the header row holds one of those (outside
quotes) and no comma (what a spreadsheet saves as "CSV" where the decimal mark is a comma), or by
what an Excel `sep=;` first line names. Columns whose
name starts with ``_`` are ignored (notes, or the metadata columns of ``batchrun export``).
"""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from batchrun.errors import Location, Problem
from batchrun.manifest.yamlnodes import control_character

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

#: columns whose header starts with this are not read (``_key``, ``_state``, notes ...)
IGNORED_PREFIX = "_"


@dataclass
class Row:
    """One data row: its line and its non-empty cells as header -> (text, 1-based column)."""

    line: int
    cells: dict[str, tuple[str, int]] = field(default_factory=dict)
    unreadable: set[str] = field(default_factory=set)  #: columns whose cell is a problem already


@dataclass
class Table:
    """A read CSV file."""

    path: str
    headers: list[str]
    header_columns: dict[str, int]  #: header -> 1-based column
    rows: list[Row]
    problems: list[Problem]
    header_line: int = 1
    row_count: int = 0

    def header_location(self, name: str) -> Location:
        return Location(self.path, self.header_line, self.header_columns.get(name, 1))


def read_table(text: str, path: str, on_row: Callable[[Table, Row], None] | None = None,
               tsv: bool = False) -> Table:
    """Split CSV ``text`` into rows; every structural problem is in ``Table.problems``. With
    ``on_row``, each row goes to it as it is read, rather than into ``Table.rows`` (a 100,000-row
    file then never holds every row's texts beside what is made of them). ``tsv``: the file's
    name says it is separated by tabs (see ``delimiter_of``)."""
    problems: list[Problem] = []
    table = Table(path=path, headers=[], header_columns={}, rows=[], problems=problems)
    # strict: a quote left open or a stray quote in a quoted cell is an error, not a silent repair
    # (an open quote used to swallow every later row into one cell)
    reader = csv.reader(_lines(text), delimiter=delimiter_of(text, tsv=tsv), strict=True)
    start = 1
    try:
        if excel_separator(text) is not None:
            next(reader)  # `sep=;`: not a row
        header_row: list[str] | None = None
        header_line = 1
        while header_row is None:
            start = reader.line_num + 1
            candidate = next(reader, None)
            if candidate is None:
                problems.append(Problem(Location(path, 1, 1), "", "the CSV file is empty (it needs a header row)"))
                return table
            if any(cell.strip() for cell in candidate):
                header_row, header_line = candidate, start
        # a second byte order mark (a file saved twice with one) is not part of the first name
        headers = [cell.strip() for cell in header_row]
        if headers:
            headers[0] = headers[0].lstrip("\ufeff").strip()
        seen: dict[str, int] = {}
        for column, name in enumerate(headers, start=1):
            if not name or name.startswith(IGNORED_PREFIX):
                continue
            control = control_character(name)
            if control:  # invisible in the error that names the column: say where it is instead
                problems.append(Problem(Location(path, header_line, column), "",
                                        f"the header of column {column} holds {control}"))
                continue
            if name in seen:
                problems.append(Problem(Location(path, header_line, column), name,
                                        f"duplicate column `{name}` (also column {seen[name]})"))
                continue
            seen[name] = column
        table.headers = headers
        table.header_columns = seen
        table.header_line = header_line
        while True:
            start = reader.line_num + 1
            cells = next(reader, None)
            if cells is None:
                break
            if not any(cell.strip() for cell in cells):
                continue
            row = Row(line=start)
            for column, text_value in enumerate(cells, start=1):
                if not text_value.strip():
                    continue
                if column > len(headers):
                    problems.append(Problem(
                        Location(path, start, column), "",
                        f"row has {len(cells)} cells but the header has {len(headers)} columns",
                    ))
                    break
                name = headers[column - 1]
                if name.startswith(IGNORED_PREFIX):
                    continue
                if not name:
                    problems.append(Problem(Location(path, start, column), "",
                                            f"cell in column {column}, which has no header name"))
                    continue
                if seen.get(name) != column:
                    continue  # a duplicate column, reported at the header
                # the control characters a YAML manifest refuses: a prompt never carries an escape code
                control = control_character(text_value)
                if control:
                    problems.append(Problem(Location(path, start, column), name, f"the cell holds {control}"))
                    row.unreadable.add(name)
                    continue
                row.cells[name] = (text_value, column)
            table.row_count += 1
            if on_row is None:
                table.rows.append(row)
            else:
                on_row(table, row)
    except csv.Error as error:
        problems.append(Problem(Location(path, start, None), "", _csv_error(str(error))))
    return table


#: a line with its end (``\r\n``, ``\r`` or ``\n``), as ``io.StringIO(text, newline="")`` splits
#: them, which would copy the whole text into 4 bytes per character first
_LINE = re.compile(r"[^\r\n]*(?:\r\n?|\n)|[^\r\n]+\Z")


def _lines(text: str) -> Iterator[str]:
    return (match.group() for match in _LINE.finditer(text))


def delimiter_of(text: str, *, tsv: bool = False) -> str:
    """What Excel's `sep=;` first line says; else a tab for a ``tsv`` (which does not quote); else
    ``,``; or ``;`` / tab when the first non-blank line holds one of those outside quotes
    (`"notes, misc"` is one name) and no comma."""
    named = excel_separator(text)
    if named is not None:
        return named
    if tsv:
        return "\t"
    first = _outside_quotes(next((line for line in text.splitlines() if line.strip()), ""))
    if "," not in first:
        for candidate in (";", "\t"):
            if candidate in first:
                return candidate
    return ","


_EXCEL_SEPARATOR = re.compile(r'"?sep=(.)"?', re.IGNORECASE)


def excel_separator(text: str) -> str | None:
    """The separator a first line `sep=;` names (Excel writes it, and reads the file by it)."""
    first = text.split("\n", 1)[0].split("\r", 1)[0].lstrip("\ufeff").strip(" ")
    match = _EXCEL_SEPARATOR.fullmatch(first)
    return match[1] if match and match[1] not in "\"\r\n" else None


def _outside_quotes(line: str) -> str:
    return "".join(part for index, part in enumerate(line.split('"')) if index % 2 == 0)


def _csv_error(message: str) -> str:
    """The csv module's complaint, said in terms of the file (it names the row it started on)."""
    if "unexpected end of data" in message or "EOF" in message:
        return ("a quoted cell on this row is never closed (the rest of the file would be read as one cell); "
                'close it, or write a quote inside a cell as ""')
    if "expected after" in message:
        return 'a quote inside a quoted cell must be written twice (""), or the cell left unquoted'
    return f"CSV error: {message}"
