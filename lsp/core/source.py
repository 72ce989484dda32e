"""Reading a source file safely and turning an LSP position into a string offset."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

PositionEncoding = Literal["utf-8", "utf-16", "utf-32"]

MAX_SOURCE_BYTES = 4 * 1024 * 1024


class InputError(Exception):
    """The user's input (file, position) cannot be used; the message is one clear line."""


def read_source(path: Path, max_bytes: int = MAX_SOURCE_BYTES) -> str:
    """The text of a UTF-8 source file; refuses missing, binary, oversized and non-UTF-8 files."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as error:
        raise InputError(f"{path}: {error.strerror or error}") from None
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    if size > max_bytes:
        raise InputError(f"{path}: {size} bytes is over the {max_bytes}-byte limit for completion")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"{path}: {error.strerror or error}") from None
    if b"\0" in data[:8192]:
        raise InputError(f"{path}: binary file (contains NUL bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        bad = data[error.start]
        raise InputError(
            f"{path}: not UTF-8 text (invalid byte 0x{bad:02x} at offset {error.start})"
        ) from None


def offset_at(text: str, line: int, column: int, encoding: PositionEncoding = "utf-16") -> int:
    """The string index of a 0-based (line, column) position, column counted in ``encoding`` units.

    A column may point at the end of the line but not past it; ``\\r\\n`` line ends
    count as one break, as LSP defines.
    """
    if line < 0 or column < 0:
        raise InputError(f"position {line}:{column} is negative")
    lines = text.splitlines(keepends=True)
    if line > len(lines) or (line == len(lines) and not (text.endswith(("\n", "\r")) or not text)):
        raise InputError(f"line {line} is past the end of the file ({len(lines)} lines)")
    start = sum(len(chunk) for chunk in lines[:line])
    content = lines[line].rstrip("\r\n") if line < len(lines) else ""
    units = 0
    for index, char in enumerate(content):
        if units == column:
            return start + index
        units += _units(char, encoding)
        if units > column:
            raise InputError(f"column {column} splits a character on line {line}")
    if units == column:
        return start + len(content)
    raise InputError(
        f"column {column} is past the end of line {line} ({units} {encoding} units long)"
    )


def _units(char: str, encoding: PositionEncoding) -> int:
    if encoding == "utf-32":
        return 1
    if encoding == "utf-16":
        return 2 if ord(char) > 0xFFFF else 1
    return len(char.encode("utf-8"))
