"""Line-aware YAML: plain Python values plus a way back to the line and column of any value.

Pure. The text is composed into PyYAML nodes (which carry their marks) and converted to plain
values by hand, so that duplicate keys become problems instead of silently winning, aliases
cannot expand without bound (billion laughs), and tags other than the plain JSON-like ones are
refused. Plain scalars follow the YAML 1.2 core schema where YAML 1.1 surprises: an unquoted
``1e-1`` is a float, ``010`` is 10, and ``4:3``, ``1_0`` and ``yes``/``off`` stay text.
``Document.locate(path)`` walks the nodes again to find the most specific line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import re

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from batchrun.errors import Location, Problem

#: how many values aliases may add (nodes visited again through an alias) before the document is
#: refused: a guard against "billion laughs" documents, not a limit on the size of a manifest
MAX_VALUES = 500_000

_FLOAT = "tag:yaml.org,2002:float"
#: YAML 1.2 floats that YAML 1.1 (PyYAML) reads as strings: an exponent without a dot (``1e-1``,
#: ``1E3``), an exponent without a sign (``1.5e3``), a signed leading dot (``-.5``). Integers and
#: everything YAML 1.1 already reads as a number are resolved before this is tried.
FLOAT_12 = re.compile(r"[-+]?(?:(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+)\Z")


class _Resolved(str):
    """A tag the resolver chose for a plain scalar, as opposed to one written out (``!!str 010``):
    equal to the tag, but a written ``!!str`` keeps the text that YAML 1.2 would read as a number."""

    __slots__ = ()


class _ResolvingLoader:
    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        tag = super().resolve(kind, value, implicit)  # type: ignore[misc]
        return _Resolved(tag) if kind is ScalarNode and implicit[0] else tag


class _CLoader(_ResolvingLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The fast safe loader, resolving YAML 1.2 floats too."""


class _PyLoader(_ResolvingLoader, yaml.SafeLoader):
    """The pure-Python safe loader (for very deep documents), resolving YAML 1.2 floats too."""


for _cls in (_CLoader, _PyLoader):
    # implicit resolvers only see plain (unquoted, untagged) scalars: `"1e-1"` stays a string
    _cls.add_implicit_resolver(_FLOAT, FLOAT_12, list("-+.0123456789"))

_Loader = _CLoader
#: above this (rough) nesting depth the pure-Python parser is used: libyaml's composer recurses in
#: C and crashes the process on very deep flow nesting instead of raising
SAFE_C_DEPTH = 300
_BRACKETS = re.compile(r"[\[\]{}]|- ")
_MERGE = "tag:yaml.org,2002:merge"
_PLAIN_TAGS = {
    "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null",
}
_TEXT_TAGS = {"tag:yaml.org,2002:timestamp"}  # kept as the text the user wrote
#: control characters no manifest text may hold, even written as an escape: the ones YAML refuses
#: raw (tab and line breaks are text; NEL is read as a character, see ``_STAND_INS``); CSV cells too
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f]")


def control_character(text: str) -> str | None:
    """``the control character U+001B at character 4`` for the first one in ``text``, or None."""
    found = CONTROL_CHARACTERS.search(text)
    if found is None:
        return None
    return f"the control character U+{ord(found.group()):04X} at character {found.start() + 1}"


class _TooBig(Exception):
    pass


def _mark(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


@dataclass
class Document:
    """A parsed YAML file: its plain value and the nodes to locate things in."""

    path: str
    value: Any
    root: Node | None
    problems: list[Problem] = field(default_factory=list)

    def at(self, node: Node | None) -> Location:
        if node is None:
            return Location(self.path, 1, 1)
        line, column = _mark(node)
        return Location(self.path, line, column)

    def node(self, path: tuple[Any, ...], *, key: bool = False) -> Node | None:
        """The node at ``path`` (or, with ``key``, the key node of its last step); None if absent."""
        node = self.root
        for depth, step in enumerate(path):
            if node is None:
                return None
            last = depth == len(path) - 1
            if isinstance(node, MappingNode):
                found = None
                for key_node, value_node in _pairs(node):
                    if isinstance(key_node, ScalarNode) and _scalar_key(key_node) == step:
                        found = key_node if (key and last) else value_node
                node = found
            elif isinstance(node, SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
                node = node.value[step]
            else:
                return None
        return node

    def as_written(self, path: tuple[Any, ...], value: Any) -> str | None:
        """The text of an unquoted number as the user wrote it (``9.90``, ``007``, ``+3``), when
        ``value`` at ``path`` is one; a template shows a value as written, not as Python prints it."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        node = self.node(path)
        if isinstance(node, ScalarNode) and not node.style:
            return node.value
        return None

    def locate(self, path: tuple[Any, ...], *, key: bool = False) -> Location:
        """The most specific location for ``path``: the deepest existing node along it."""
        for end in range(len(path), -1, -1):
            node = self.node(path[:end], key=key and end == len(path))
            if node is not None:
                return self.at(node)
        return Location(self.path, 1, 1)


def _pairs(node: MappingNode) -> Iterator[tuple[Node, Node]]:
    """Key/value node pairs of a mapping, with ``<<`` merges first so explicit keys win."""
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE:
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for source in reversed(sources):  # later pairs win, and in YAML the first source wins
                if isinstance(source, MappingNode):
                    yield from _pairs(source)
    for key_node, value_node in node.value:
        if key_node.tag != _MERGE:
            yield key_node, value_node


_constructor = yaml.constructor.SafeConstructor()


_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})


#: YAML 1.2 core schema: what an unquoted scalar PyYAML (YAML 1.1) resolved as a bool, int or
#: float must look like to be one; anything else stays the text written
_BOOL_12 = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT_12 = re.compile(r"[-+]?[0-9]+\Z")
_OCT_12 = re.compile(r"0o[0-7]+\Z")
_HEX_12 = re.compile(r"0x[0-9a-fA-F]+\Z")
_SPECIAL_FLOAT_12 = re.compile(r"[-+]?\.(?:inf|Inf|INF)\Z|\.(?:nan|NaN|NAN)\Z")
#: digits past which a number is refused rather than converted (Python's own limit is 4,300)
MAX_DIGITS = 100


def _scalar(node: ScalarNode) -> Any:
    """A plain scalar's value, by the YAML 1.2 core schema.

    PyYAML resolves YAML 1.1, which surprises in a manifest: ``010`` is octal 8, ``1_0`` is 10,
    ``yes``/``no``/``on``/``off`` are booleans (a matrix of words turns into ``true``/``false``
    prompts), ``4:3`` is the base-60 number 243. YAML 1.2 reads ``010`` as 10 and keeps the others
    as the text written, and so does batchrun. Numbers longer than ``MAX_DIGITS`` are text too
    (the validator then says what it wanted), never a conversion that cannot end or overflows.
    """
    tag, text = node.tag, node.value
    if node.style or tag not in _RESOLVED_BY_11:  # quoted, null, or a tag written out: as PyYAML says
        return _constructor.yaml_constructors[tag](_constructor, node)
    if tag == _STR and not isinstance(tag, _Resolved):  # `!!str 010`: the text, as asked
        return text
    if tag == _BOOL:
        return _BOOL_12.get(text, text)
    if len(text) > MAX_DIGITS:
        return text
    number = _int_12(text)  # `09` and `0o17` too, which YAML 1.1 leaves as text
    if number is not None:
        return number
    if tag == _FLOAT and (FLOAT_12.match(text) or _SPECIAL_FLOAT_12.match(text)):
        return _constructor.yaml_constructors[tag](_constructor, node)
    return text


def _int_12(text: str) -> int | None:
    if _INT_12.match(text):
        return int(text, 10)
    if _OCT_12.match(text):
        return int(text[2:], 8)
    if _HEX_12.match(text):
        return int(text[2:], 16)
    return None


_BOOL, _FLOAT, _STR = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:float", "tag:yaml.org,2002:str"
#: what PyYAML may have resolved a plain scalar to by YAML 1.1's rules (style None or "" is plain)
_RESOLVED_BY_11 = frozenset({_BOOL, "tag:yaml.org,2002:str"}) | _NUMBER_TAGS


def _scalar_key(node: ScalarNode) -> Any:
    try:
        return _scalar(node) if node.tag in _PLAIN_TAGS else node.value
    except Exception:  # pragma: no cover - a bad scalar key is reported by the converter
        return node.value


class _Converter:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.visited: set[int] = set()  # ids of the nodes converted once
        self.expanded = 0  # conversions of nodes already converted: what aliases added

    def problem(self, node: Node, message: str) -> None:
        self.doc.problems.append(Problem(self.doc.at(node), "", message))

    def convert(self, node: Node, depth: int = 0) -> Any:
        if id(node) in self.visited:  # an alias brought this node (and its children) back
            self.expanded += 1
            if self.expanded > MAX_VALUES:
                raise _TooBig
        else:
            self.visited.add(id(node))
        if depth > 200:
            self.problem(node, "nested too deeply (more than 200 levels)")
            return None
        if isinstance(node, ScalarNode):
            if node.tag in _PLAIN_TAGS:
                try:
                    value = _scalar(node)
                except (yaml.YAMLError, ValueError, OverflowError):
                    self.problem(node, f"cannot read the value `{node.value[:40]}`")
                    return None
                if isinstance(value, str) and _SURROGATE.search(value):
                    value = _joined_surrogates(value)
                    if _SURROGATE.search(value):
                        self.problem(node, "the text holds half of a character escaped as two (a lone `\\ud800`-"
                                           "`\\udfff`); write the character itself")
                        return None
                control = control_character(value) if isinstance(value, str) else None
                if control:  # written as an escape (`"\e[31m"`, `"\0"`): the raw byte is refused by the reader
                    self.problem(node, f"the text holds {control} (an escape such as \\e or \\0)")
                return value
            if node.tag in _TEXT_TAGS:
                return node.value
            self.problem(node, f"unsupported YAML tag `{node.tag}`; use plain strings, numbers, lists and mappings")
            return None
        if isinstance(node, SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                self.problem(node, f"unsupported YAML tag `{node.tag}`")
            return [self.convert(item, depth + 1) for item in node.value]
        if isinstance(node, MappingNode):
            if node.tag != "tag:yaml.org,2002:map":
                self.problem(node, f"unsupported YAML tag `{node.tag}`")
            result: dict[Any, Any] = {}
            explicit: dict[Any, Node] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE:
                    sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                    taken: set[Any] = set()  # in `<<: [*a, *b]` the first mapping wins (YAML's merge rule)
                    for source in sources:
                        merged = self.convert(source, depth + 1)
                        if isinstance(merged, dict):
                            for k, v in merged.items():
                                if k not in explicit and k not in taken:
                                    result[k] = v
                                    taken.add(k)
                        else:
                            self.problem(source, "`<<` must merge a mapping (or a list of mappings)")
                    continue
                if not isinstance(key_node, ScalarNode):
                    self.problem(key_node, "mapping keys must be plain strings")
                    continue
                key = self.convert(key_node, depth + 1)
                if isinstance(key, (list, dict)):  # pragma: no cover - scalar nodes give scalars
                    continue
                if key in explicit:
                    line, _ = _mark(explicit[key])
                    self.problem(key_node, f"duplicate key `{key}` (first at line {line})")
                    continue
                explicit[key] = key_node
                result[key] = self.convert(value_node, depth + 1)
            return result
        return None  # pragma: no cover


def _rough_depth(text: str) -> int:
    """An over-estimate of how deeply ``text`` nests (brackets anywhere, ``- `` runs on one line)."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth = max(depth - 1, 0)
    dashes = max((line.count("- ") for line in text.splitlines()), default=0)
    return deepest + dashes


_SURROGATE = re.compile("[\ud800-\udfff]")


def _joined_surrogates(text: str) -> str:
    """``text`` with each pair of surrogate halves (a `\\ud83c\\udfac` escape) made the one character
    it means; a lone half stays (and is refused by the caller)."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


#: YAML 1.1 (PyYAML) counts NEL, LS and PS as line breaks: every line number after one would be
#: off by one, and a NEL inside a quoted string would be folded into a space. YAML 1.2 reads them
#: as ordinary characters; so does batchrun, by parsing with stand-ins (noncharacters that no
#: text carries) and putting the originals back into every string.
_STAND_INS = {"\x85": "\ufdd0", "\u2028": "\ufdd1", "\u2029": "\ufdd2"}
_TO_STAND_INS = str.maketrans(_STAND_INS)
_FROM_STAND_INS = str.maketrans({v: k for k, v in _STAND_INS.items()})


def _restored(value: Any) -> Any:
    if isinstance(value, str):
        return value.translate(_FROM_STAND_INS)
    if isinstance(value, list):
        return [_restored(item) for item in value]
    if isinstance(value, dict):
        return {_restored(k): _restored(v) for k, v in value.items()}
    return value


def parse(text: str, path: str) -> Document:
    """Parse YAML ``text``; syntax errors and the other refusals are in ``Document.problems``."""
    doc = _parse_swapped(text, path)
    if doc.problems and "Unicode character escape" in doc.problems[0].message:
        # JSON writes a character beyond U+FFFF as two escapes, `"\ud83c\udfac"` (json.dumps
        # does by default), which LibYAML refuses; PyYAML's own reader takes each half, and the
        # converter joins them (only escapes of double-quoted strings are read so, and the
        # text, so every line and column, is the file's)
        doc = _parse_swapped(text, path, loader=_PyLoader)
    return doc


def _parse_swapped(text: str, path: str, loader: type | None = None) -> Document:
    swapped = any(c in text for c in _STAND_INS) and not any(c in text for c in _STAND_INS.values())
    doc = _parse(text.translate(_TO_STAND_INS) if swapped else text, path, loader)
    if swapped:
        doc.value = _restored(doc.value)
    return doc


def _parse(text: str, path: str, loader: type | None = None) -> Document:
    doc = Document(path=path, value=None, root=None)
    try:
        root = yaml.compose(text, Loader=loader or (_Loader if _rough_depth(text) <= SAFE_C_DEPTH else _PyLoader))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        what = " ".join(x for x in (error.context, error.problem) if x) or "invalid YAML"
        doc.problems.append(Problem(Location(path, line, column), "", f"YAML syntax error: {what}"))
        return doc
    except yaml.reader.ReaderError as error:
        position = getattr(error, "position", 0) or 0
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        char = error.character
        code = char if isinstance(char, int) else ord(char[:1] or "\0")
        doc.problems.append(Problem(Location(path, line, column), "",
                                    f"YAML cannot contain the control character U+{code:04X}"))
        return doc
    except yaml.YAMLError as error:
        detail = str(error).splitlines()[0] if str(error) else "invalid YAML"
        doc.problems.append(Problem(Location(path, 1, 1), "", f"YAML error: {detail}"))
        return doc
    except RecursionError:
        doc.problems.append(Problem(Location(path, 1, 1), "", "YAML is nested too deeply"))
        return doc
    doc.root = root
    if root is None:
        return doc
    converter = _Converter(doc)
    try:
        doc.value = converter.convert(root)
    except _TooBig:
        doc.value = None
        doc.problems.append(Problem(Location(path, 1, 1), "",
                                    f"YAML anchors/aliases expand to more than {MAX_VALUES:,} values"))
    except RecursionError:
        doc.value = None
        doc.problems.append(Problem(Location(path, 1, 1), "", "YAML is nested too deeply"))
    return doc
