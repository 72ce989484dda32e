"""Constrained decoding of names over a fake vocabulary: the trie of pieces and the processor."""

from __future__ import annotations

import ctypes
import logging
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.runtime.constrain import (
    NameProcessor,
    PieceIndex,
    allowed_tokens,
    is_identifier_byte,
    name_processor,
    shape_of,
)
from model.runtime.worker_constraints import WorkerConstraints

CAFE = "café"  # a name whose last character is two bytes, split across pieces below
NAMES = ("path", "pathsep", "getcwd", "listdir", CAFE)
PIECES: tuple[bytes, ...] = (
    b"",  # a control token (end of generation)
    b"p",
    b"pa",
    b"th",
    b"path",
    b"ath",
    b"sep",
    b"th(",  # ends "path" and opens a call
    b"h.jo",  # ends "path", then an attribute of it
    b" path",  # a leading space: a word, not the rest of an identifier
    b" ",
    b"  ",
    b"(",
    b".",
    b"\n",
    b"get",
    b"getc",
    b"wd()",
    b"cwd",
    b"list",
    b"dir",
    b"caf",
    b"\xc3",  # the first byte of "é"
    b"\xa9",  # its second byte
    b"\xc3\xa9",
    b"environ",
    b"pathx",  # "path" then more identifier: no name
    b"x",
    b"_",
    b"e",
    b"ps",
)
PROMPT = 3  # fake prompt tokens before the generated ones


def ids_of(*pieces: bytes) -> list[int]:
    return [PIECES.index(piece) for piece in pieces]


def allowed(
    index: PieceIndex, names: tuple[str, ...], written: bytes, typed: str = "", lead: str = ""
) -> set[bytes] | None:
    processor = name_processor(index, names, typed, lead, PROMPT)
    assert processor is not None
    found = allowed_tokens(index, processor._names, written)
    return None if found is None else {index.pieces[token] for token in found.tolist()}


@pytest.fixture(scope="module")
def index() -> PieceIndex:
    return PieceIndex(PIECES)


def test_identifier_bytes_are_ascii_word_characters_and_every_non_ascii_byte() -> None:
    assert all(is_identifier_byte(b) for b in b"azAZ09_\x80\xc3\xff")
    assert not any(is_identifier_byte(b) for b in b" \t\n().,:=[]'\"#")


def test_a_piece_shape_is_its_blank_its_identifier_run_and_whether_it_closes() -> None:
    assert shape_of(b"path") == (b"", b"path", False)
    assert shape_of(b"th(") == (b"", b"th", True)
    assert shape_of(b" path") == (b" ", b"path", False)
    assert shape_of(b"\t x.y") == (b"\t ", b"x", True)
    assert shape_of(b"(") == (b"", b"", True)
    assert shape_of(b"  ") == (b"  ", b"", False)
    assert shape_of(b"") == (b"", b"", True)  # a control token ends the identifier


def test_at_the_start_only_pieces_that_begin_a_name(index: PieceIndex) -> None:
    assert allowed(index, NAMES, b"") == {
        b"p",
        b"pa",
        b"path",
        b"get",
        b"getc",
        b"list",
        b"caf",
    }


def test_a_piece_may_split_a_name_anywhere_and_close_it_with_what_follows(
    index: PieceIndex,
) -> None:
    after_pa = allowed(index, NAMES, b"pa")
    assert after_pa == {b"th", b"th("}  # "th(" completes "path" and opens the call
    assert allowed(index, NAMES, b"p") == {b"ath"}
    assert b"h.jo" in (allowed(index, NAMES, b"pat") or set())  # "path", then ".jo" freely


def test_a_complete_name_may_close_or_grow_into_a_longer_one(index: PieceIndex) -> None:
    after_path = allowed(index, NAMES, b"path")
    assert after_path is not None
    assert {b"sep", b"(", b".", b"\n", b" ", b" path", b""} <= after_path  # "" ends generation
    assert not {b"x", b"pathx", b"e", b"_", b"path"} & after_path
    # "pathsep" complete: nothing longer exists, so only what ends an identifier.
    assert allowed(index, NAMES, b"pathsep") == {p for p in PIECES if not p or p[:1] in b" (.\n"}


def test_pieces_with_a_leading_space_never_continue_a_name(index: PieceIndex) -> None:
    assert b" path" not in (allowed(index, NAMES, b"") or set())
    assert b" " not in (allowed(index, NAMES, b"get") or set())


def test_multi_byte_characters_split_across_pieces(index: PieceIndex) -> None:
    assert allowed(index, NAMES, b"caf") == {b"\xc3", b"\xc3\xa9"}
    assert allowed(index, NAMES, b"caf\xc3") == {b"\xa9"}
    assert b"(" in (allowed(index, NAMES, CAFE.encode()) or set())


def test_the_typed_part_filters_the_names_and_the_rest_is_constrained(index: PieceIndex) -> None:
    # The user typed "os.pa": the names left are path and pathsep, the model writes "th...".
    assert allowed(index, NAMES, b"", typed="pa") == {b"th", b"th("}
    assert name_processor(index, NAMES, "zz", "", PROMPT) is None  # nothing fits: free


def test_a_healed_blank_comes_first_then_the_name(index: PieceIndex) -> None:
    # "from os import " with the space left out of the prompt: the model writes " path".
    start = allowed(index, NAMES, b"", lead=" ")
    assert start == {b" ", b" path"}
    assert allowed(index, NAMES, b" ", lead=" ") == allowed(index, NAMES, b"")
    assert b"  " not in (start or set())


def test_after_the_identifier_ends_decoding_is_free(index: PieceIndex) -> None:
    assert allowed(index, NAMES, b"path(") is None
    assert allowed(index, NAMES, b"path.jo") is None


# -- the reference: what "continues a legal name" means, token by token ------------------

_NAME_PARTS = ["a", "b", "_", "1", "é"]
_PIECE_PARTS = [b"a", b"b", b"_", b"1", b"\xc3", b"\xa9", b" ", b"(", b".", b"\n", b"\t"]


def _closes(text: bytes, rests: set[bytes]) -> bool:
    """``text`` is a legal name followed by a byte that is not an identifier byte."""
    for cut, byte in enumerate(text):
        if not is_identifier_byte(byte):
            return text[:cut] in rests
    return False


def _reference(lead: bytes, rests: set[bytes], written: bytes, piece: bytes) -> bool:
    text = written + piece
    if not piece:  # a control token: allowed where the identifier is complete
        return (
            len(written) >= len(lead) and written.startswith(lead) and written[len(lead) :] in rests
        )
    if len(text) <= len(lead):
        return lead.startswith(text)
    if not text.startswith(lead):
        return False
    rest = text[len(lead) :]
    if all(is_identifier_byte(b) for b in rest):
        return any(name.startswith(rest) for name in rests)
    return _closes(rest, rests)


names_st = st.lists(
    st.lists(st.sampled_from(_NAME_PARTS), min_size=1, max_size=5).map("".join),
    min_size=1,
    max_size=6,
)
# Pieces split characters anywhere: "é" may come as two one-byte pieces.
pieces_st = st.lists(
    st.lists(st.sampled_from(_PIECE_PARTS), min_size=0, max_size=4).map(b"".join),
    min_size=1,
    max_size=40,
)


@given(
    names=names_st,
    pieces=pieces_st,
    lead=st.sampled_from([b"", b" ", b"  ", b"\t"]),
    data=st.data(),
)
def test_allowed_tokens_match_the_definition_token_by_token(
    names: list[str], pieces: list[bytes], lead: bytes, data: st.DataObject
) -> None:
    index = PieceIndex(pieces)
    processor = name_processor(index, names, "", lead.decode(), PROMPT)
    assert processor is not None
    rests = set(processor._names.rests)
    target = data.draw(st.sampled_from(sorted(rests)))
    cut = data.draw(st.integers(0, len(lead) + len(target)))
    written = (lead + target)[:cut]
    found = allowed_tokens(index, processor._names, written)
    assert found is not None
    expected = {t for t, piece in enumerate(pieces) if _reference(lead, rests, written, piece)}
    assert set(found.tolist()) == expected


# -- the processor, as llama-cpp-python calls it -------------------------------------------


def generate(processor: NameProcessor, logits_of: Any, steps: int = 8) -> bytes:
    """Greedy decoding over the fake vocabulary with the processor in the sampler chain."""
    ids = [7, 7, 7]  # the prompt (PROMPT tokens)
    for step in range(steps):
        logits = np.asarray(logits_of(step), dtype=np.float32)
        token = int(np.argmax(processor(np.asarray(ids, dtype=np.intc), logits)))
        if PIECES[token] == b"":
            break
        ids.append(token)
    return b"".join(PIECES[t] for t in ids[PROMPT:])


def preferring(*order: bytes) -> Any:
    """Logits where the pieces in ``order`` score highest, first best."""

    def logits_of(step: int) -> list[float]:
        scores = [0.0] * len(PIECES)
        for rank, piece in enumerate(order):
            scores[PIECES.index(piece)] = 100.0 - rank
        return scores

    return logits_of


def test_the_processor_steers_greedy_decoding_to_a_legal_name(index: PieceIndex) -> None:
    # The model wants "environ" (not allowed), then "pathx": it gets "path" and its call.
    model = preferring(b"environ", b"pathx", b"x", b"path", b"(", b"\n")
    processor = name_processor(index, NAMES, "", "", PROMPT)
    assert processor is not None
    text = generate(processor, model, steps=3)
    assert text.startswith(b"path(")
    assert processor.free and processor.steps == 2  # the name, then what closes it


def test_without_the_processor_the_same_model_writes_an_unknown_name() -> None:
    model = preferring(b"environ", b"pathx", b"x", b"path", b"(")
    logits = np.asarray(model(0), dtype=np.float32)
    assert PIECES[int(np.argmax(logits))] == b"environ"


def test_once_free_the_logits_pass_through_untouched(index: PieceIndex) -> None:
    processor = name_processor(index, NAMES, "", "", PROMPT)
    assert processor is not None
    ids = np.asarray([7, 7, 7, *ids_of(b"path", b"(")], dtype=np.intc)
    logits = np.arange(len(PIECES), dtype=np.float32)
    out = processor(ids, logits.copy())
    assert processor.free and np.array_equal(out, logits)


def test_a_processor_error_falls_back_to_free_decoding_with_one_log_line(
    index: PieceIndex, caplog: pytest.LogCaptureFixture
) -> None:
    processor = name_processor(index, NAMES, "", "", PROMPT)
    assert processor is not None
    short = np.zeros(5, dtype=np.float32)  # not the vocabulary's size
    with caplog.at_level(logging.WARNING, logger="model.runtime.constrain"):
        out = processor(np.asarray([7, 7, 7], dtype=np.intc), short)
        processor(np.asarray([7, 7, 7, 1], dtype=np.intc), short)
    assert out is short and processor.free
    assert len([r for r in caplog.records if "decoding freely" in r.message]) == 1


def test_a_name_no_piece_can_spell_frees_decoding(caplog: pytest.LogCaptureFixture) -> None:
    index = PieceIndex([b"", b"a", b"("])
    processor = name_processor(index, ["ab"], "", "", 0)
    assert processor is not None
    logits = np.zeros(3, dtype=np.float32)
    with caplog.at_level(logging.WARNING, logger="model.runtime.constrain"):
        processor(np.asarray([1], dtype=np.intc), logits)  # "a" written: no "b" piece
    assert processor.free and not np.isinf(logits).any()
    assert "no token continues a legal name" in caplog.text


class _FakeLlama:
    """Just what ``WorkerConstraints`` reads of a ``Llama`` and of ``llama_cpp``."""

    def __init__(self, pieces: tuple[bytes, ...]) -> None:
        self.pieces = pieces
        self._model = self
        self.vocab = object()
        self.calls = 0

    def n_vocab(self) -> int:
        return len(self.pieces)

    def llama_token_to_piece(
        self, vocab: object, token: int, buffer: Any, size: int, lstrip: int, special: bool
    ) -> int:
        self.calls += 1
        piece = self.pieces[token]
        ctypes.memmove(buffer, piece, len(piece))
        return len(piece)


def test_the_worker_indexes_the_vocabulary_once_and_builds_a_processor_per_request() -> None:
    fake = _FakeLlama(PIECES)
    constraints = WorkerConstraints(fake, fake)
    assert constraints.processor(None, PROMPT) is None  # no names: no processor at all
    spec = {"names": list(NAMES), "typed": "pa", "lead": ""}
    first = constraints.processor(spec, PROMPT)
    second = constraints.processor(spec, PROMPT)
    assert first is not None and second is not None and first is not second
    assert fake.calls == len(PIECES)  # the piece table was built once


def test_a_malformed_names_spec_is_logged_and_decoding_stays_free(
    caplog: pytest.LogCaptureFixture,
) -> None:
    constraints = WorkerConstraints(_FakeLlama(PIECES), None)
    with caplog.at_level(logging.WARNING, logger="model.runtime.worker_constraints"):
        assert constraints.processor(["path"], PROMPT) is None
    assert "names not constrained" in caplog.text
