"""Which line of a TOML text each table and key is on: tomllib keeps no positions.

Only lines that begin outside any value can start a table or a key, so the
scan follows strings (a multi-line string may hold `[[cameras]]`) and arrays
that span lines, and matches headers and keys on the other lines alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

KeyPath = tuple[int | str, ...]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


def key_lines(text: str) -> dict[KeyPath, int]:
    """Line numbers of the tables and keys in a TOML text, by path (`cameras`, 2, `main`).

    This covers the shapes vehicle configs use (tables, arrays of tables, one
    key a line). Inline tables and arrays map to their key's line.
    """
    lines: dict[KeyPath, int] = {}
    counts: dict[KeyPath, int] = {}
    table: KeyPath = ()
    for number, line in _statement_lines(text):
        if m := _HEADER.match(line):
            path: KeyPath = ()
            names = m.group(2).split(".")
            for i, name in enumerate(names):
                path += (name,)
                if path + (counts.get(path, 0) - 1,) in lines and i < len(names) - 1:
                    path += (counts[path] - 1,)
            if m.group(1) == "[[":
                counts[path] = counts.get(path, 0) + 1
                path += (counts[path] - 1,)
            table = path
            lines.setdefault(table, number)
        elif m := _KEY.match(line):
            lines.setdefault(table + (m.group(1),), number)
    return lines


def _statement_lines(text: str) -> Iterator[tuple[int, str]]:
    """(number, line) of the lines that begin outside every string and array."""
    scan = _Scanner()
    for number, line in enumerate(text.splitlines(), 1):
        if scan.outside:
            yield number, line
        scan.feed(line)


class _Scanner:
    """Follows what is still open at the end of each line: a multi-line string, arrays."""

    def __init__(self) -> None:
        self.string: str | None = None  # the open multi-line string's delimiter, """ or '''
        self.depth = 0  # brackets and braces of values not yet closed

    @property
    def outside(self) -> bool:
        return self.string is None and self.depth == 0

    def feed(self, line: str) -> None:
        # A header's brackets are not a value's; it cannot open anything that spans lines.
        header = self.outside and line.lstrip().startswith("[")
        i, end = 0, len(line)
        while i < end:
            if self.string is not None:
                i = self._close_multiline(line, i)
                continue
            c = line[i]
            if c == "#":
                return
            if c in "\"'":
                if line.startswith(c * 3, i):
                    self.string = c * 3
                    i += 3
                else:
                    i = _end_of_string(line, i)
                continue
            if not header:
                if c in "[{":
                    self.depth += 1
                elif c in "]}":
                    self.depth = max(0, self.depth - 1)
            i += 1

    def _close_multiline(self, line: str, i: int) -> int:
        """Index just past the open string's end on this line, or the line's end."""
        assert self.string is not None
        quote = self.string[0]
        while i < len(line):
            if quote == '"' and line[i] == "\\":
                i += 2  # an escape; at the end of a line, a continuation
                continue
            if line.startswith(self.string, i):
                run = i
                while run < len(line) and line[run] == quote:
                    run += 1
                # Up to two quotes just before the delimiter belong to the string.
                self.string = None
                return i + min(run - i, 5)
            i += 1
        return i


def _end_of_string(line: str, start: int) -> int:
    """Index just past the one-line string that opens at `start`."""
    quote = line[start]
    i = start + 1
    while i < len(line):
        if quote == '"' and line[i] == "\\":
            i += 2
            continue
        if line[i] == quote:
            return i + 1
        i += 1
    return i
