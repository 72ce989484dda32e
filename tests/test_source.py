"""Reading source files and converting LSP positions to offsets."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsp.core.source import InputError, offset_at, read_source


def test_offset_counts_utf16_units_for_astral_characters() -> None:
    text = "a = '😀x'\nb = 1\n"
    # The emoji takes two UTF-16 units, one UTF-32 unit and four UTF-8 bytes.
    assert text[offset_at(text, 0, 7, "utf-16")] == "x"
    assert text[offset_at(text, 0, 6, "utf-32")] == "x"
    assert text[offset_at(text, 0, 9, "utf-8")] == "x"


def test_offset_on_second_line_and_line_end() -> None:
    text = "first\r\nsecond\n"
    assert offset_at(text, 1, 0) == text.index("second")
    assert offset_at(text, 1, 6) == text.index("second") + 6
    assert offset_at(text, 2, 0) == len(text)


@pytest.mark.parametrize(
    ("line", "col", "message"),
    [
        (5, 0, "past the end of the file"),
        (0, 99, "past the end of line 0"),
        (-1, 0, "negative"),
    ],
)
def test_positions_outside_the_file_are_refused(line: int, col: int, message: str) -> None:
    with pytest.raises(InputError, match=message):
        offset_at("x = 1\ny = 2", line, col)


def test_position_inside_a_surrogate_pair_is_refused() -> None:
    with pytest.raises(InputError, match="splits a character"):
        offset_at("😀", 0, 1, "utf-16")


def test_empty_file_has_position_zero() -> None:
    assert offset_at("", 0, 0) == 0


def test_read_source_refuses_binary_and_non_utf8(tmp_path: Path) -> None:
    binary = tmp_path / "blob.py"
    binary.write_bytes(b"\x7fELF\x00\x01\x02")
    latin = tmp_path / "latin.py"
    latin.write_bytes("café = 1\n".encode("latin-1"))
    with pytest.raises(InputError, match="binary file"):
        read_source(binary)
    with pytest.raises(InputError, match="not UTF-8 text"):
        read_source(latin)
    with pytest.raises(InputError, match="no such file"):
        read_source(tmp_path / "missing.py")
    with pytest.raises(InputError, match="not a regular file"):
        read_source(tmp_path)


def test_read_source_refuses_huge_files(tmp_path: Path) -> None:
    big = tmp_path / "big.py"
    big.write_text("x = 1\n" * 100)
    with pytest.raises(InputError, match="over the 100-byte limit"):
        read_source(big, max_bytes=100)
