"""Constrained attributes after a qualifier the generation writes, over a fake vocabulary."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

import llama_cpp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.runtime.api import CompletionRequest, QualifiedNames
from model.runtime.constrain import PieceIndex, name_processor
from model.runtime.constrain_attributes import (
    AttributeProcessor,
    DotIndex,
    attribute_processor,
)
from model.runtime.llama_backend import _names_message
from model.runtime.worker_constraints import WorkerConstraints

PIECES: tuple[bytes, ...] = (
    b"",  # a control token (end of generation)
    b"x",
    b" ",
    b" =",
    b"os",
    b"o",
    b"s",
    b".",
    b"path",
    b"pa",
    b"p",
    b"th",
    b"sep",
    b"environ",
    b"(",
    b")",
    b"\n",
    b"a",
    b"xos",
    b".path",  # BPE vocabularies: the dot and the name's start in one piece
    b".environ",
    b".pa",
    b"_",
    b"_exit",
    b'"',
    b"#",
    b"__",
    b"__.__",  # Gemma has this one
    b"join",
    b"th.",
)
# A qualifier and its attribute inside one piece.
FIXED = (b" os.environ", b" os.sep")
PROMPT = 3
TABLE = (("os", ("path", "sep")), ("os.path", ("join",)), ("__", ("__",)))


def ids_of(*pieces: bytes) -> list[int]:
    return [PIECES.index(piece) for piece in pieces]


@pytest.fixture(scope="module")
def index() -> PieceIndex:
    return PieceIndex(PIECES)


@pytest.fixture(scope="module")
def dots() -> DotIndex:
    return DotIndex(PIECES)


def processor(
    index: PieceIndex,
    dots: DotIndex,
    line: str = "x = ",
    table: Sequence[tuple[str, Sequence[str]]] = TABLE,
    private: Sequence[str] = (),
) -> AttributeProcessor:
    made = attribute_processor(index, dots, table, private, line, PROMPT)
    assert made is not None
    return made


def allowed_after(made: AttributeProcessor, *generated: bytes) -> set[bytes] | None:
    """The pieces left possible after ``generated`` (all generated so far, as llama.cpp
    passes them); None where nothing was restricted."""
    ids = np.asarray([9, 9, 9, *ids_of(*generated)], dtype=np.intc)
    logits = np.zeros(len(PIECES), dtype=np.float32)
    out = made(ids, logits)
    if np.isfinite(out).all():
        return None
    return {PIECES[token] for token in np.flatnonzero(np.isfinite(out)).tolist()}


def test_after_a_generated_qualifier_only_its_names_may_follow(
    index: PieceIndex, dots: DotIndex
) -> None:
    made = processor(index, dots)
    assert allowed_after(made, b"os", b".") == {b"path", b"pa", b"p", b"s", b"sep"}
    assert allowed_after(made, b"os", b".", b"pa") == {b"th", b"th."}
    assert made.steps == 2


def test_a_complete_name_closes_and_decoding_is_free_again(
    index: PieceIndex, dots: DotIndex
) -> None:
    made = processor(index, dots)
    closing = allowed_after(made, b"os", b".", b"sep")
    assert closing is not None and {b"(", b".", b"\n", b" ", b""} <= closing
    assert not {b"x", b"path", b"_"} & closing  # "sepx", "seppath": no such name
    assert allowed_after(made, b"os", b".", b"sep", b"(") is None  # the identifier ended


def test_the_qualifier_may_come_from_the_prompt_but_its_dot_must_be_generated(
    index: PieceIndex, dots: DotIndex
) -> None:
    # The prompt ends with "x = os": the model writes the dot, then the name.
    assert allowed_after(processor(index, dots, "x = os"), b".") == {
        b"path",
        b"pa",
        b"p",
        b"s",
        b"sep",
    }
    # The prompt ends with "x = os.": the first-identifier constraint's place, not this one's.
    assert allowed_after(processor(index, dots, "x = os."), b"environ") is None
    assert allowed_after(processor(index, dots, "x = os."), b"s") is None


def test_only_a_whole_qualifier_at_an_expression_start_counts(
    index: PieceIndex, dots: DotIndex
) -> None:
    assert allowed_after(processor(index, dots), b"xos", b".") is None
    assert allowed_after(processor(index, dots), b"a", b".", b"os", b".") is None
    assert allowed_after(processor(index, dots), b")", b"os", b".") is None
    assert allowed_after(processor(index, dots, ""), b"os", b".") is not None  # the line start
    assert allowed_after(processor(index, dots), b"(", b"os", b".") is not None


def test_a_dotted_qualifier_restricts_its_own_names(index: PieceIndex, dots: DotIndex) -> None:
    made = processor(index, dots)
    assert allowed_after(made, b"os", b".", b"path", b".") == {b"join"}


def test_nothing_is_restricted_in_a_string_or_a_comment(index: PieceIndex, dots: DotIndex) -> None:
    assert allowed_after(processor(index, dots), b'"', b"os", b".") is None
    assert allowed_after(processor(index, dots), b"#", b"os", b".") is None
    # The string closed, or the comment's line ended: code again.
    assert allowed_after(processor(index, dots), b'"', b'"', b" ", b"os", b".") is not None
    assert allowed_after(processor(index, dots), b"#", b"\n", b"os", b".") is not None


def test_pieces_that_write_the_dot_and_the_name_are_checked_a_step_earlier(
    index: PieceIndex, dots: DotIndex
) -> None:
    after_os = allowed_after(processor(index, dots), b"os")
    assert after_os is not None
    assert {b".path", b".pa", b".", b"(", b"th"} <= after_os  # "osth": a longer name, free
    assert b".environ" not in after_os
    # Gemma's "__.__": its qualifier is what the text ends with plus "__".
    assert allowed_after(processor(index, dots, table=(("__", ("x",)),)), b" ") == (
        set(PIECES) - {b"__.__"}
    )
    assert allowed_after(processor(index, dots), b" ") is None  # "__" has "__"


def test_a_piece_holding_a_qualifier_and_a_missing_attribute_is_never_allowed() -> None:
    vocabulary = (*PIECES, *FIXED)
    made = attribute_processor(
        PieceIndex(vocabulary), DotIndex(vocabulary), TABLE, (), "x = ", PROMPT
    )
    assert made is not None
    for generated in ([], ids_of(b"(")):
        logits = np.zeros(len(vocabulary), dtype=np.float32)
        out = made(np.asarray([9, 9, 9, *generated], dtype=np.intc), logits)
        banned = {vocabulary[token] for token in np.flatnonzero(np.isinf(out)).tolist()}
        assert banned == {b" os.environ"}
    assert made.steps == 0  # always on: not counted as constrained steps
    # In a string it may be written.
    logits = np.zeros(len(vocabulary), dtype=np.float32)
    assert np.isfinite(made(np.asarray([9, 9, 9, *ids_of(b"(", b'"')]), logits)).all()


def test_private_names_of_a_stubbed_qualifier_stay_free(index: PieceIndex, dots: DotIndex) -> None:
    made = processor(index, dots, private=("os",))
    allowed = allowed_after(made, b"os", b".")
    assert allowed is not None and {b"_", b"_exit", b"path"} <= allowed
    assert allowed_after(made, b"os", b".", b"_") is None  # "os._": not known, free
    hidden = allowed_after(processor(index, dots), b"os", b".")
    assert hidden is not None and b"_exit" not in hidden


def test_the_processor_steers_greedy_decoding_to_a_legal_attribute(
    index: PieceIndex, dots: DotIndex
) -> None:
    # The model wants "os.environ" (os has no such name here): it writes "os.path(".
    steps = [
        [b"os"],
        [b".environ", b".", b"environ"],
        [b"environ", b"path", b"pa"],
        [b"(", b"\n"],
    ]
    made = processor(index, dots)
    ids = [9, 9, 9]
    for order in steps:
        logits = np.zeros(len(PIECES), dtype=np.float32)
        for rank, piece in enumerate(order):
            logits[PIECES.index(piece)] = 100.0 - rank
        ids.append(int(np.argmax(made(np.asarray(ids, dtype=np.intc), logits))))
    assert b"".join(PIECES[token] for token in ids[PROMPT:]) == b"os.path("


def test_with_the_first_identifier_constraint_both_apply_in_turn(
    index: PieceIndex, dots: DotIndex
) -> None:
    # The prompt ends with "x = os." (first identifier: path or sep), then "path." is
    # generated: "os.path" is a qualifier whose only name is "join".
    first = name_processor(index, ["path", "sep"], "", "", PROMPT)
    assert first is not None
    chain = llama_cpp.LogitsProcessorList([first, processor(index, dots, "x = os.")])
    ids = [9, 9, 9]
    for _ in range(3):
        logits = np.zeros(len(PIECES), dtype=np.float32)
        logits[PIECES.index(b"environ")] = 10.0
        logits[PIECES.index(b"th.")] = 5.0
        logits[PIECES.index(b"pa")] = 4.0
        logits[PIECES.index(b"join")] = 1.0
        ids.append(int(np.argmax(chain(np.asarray(ids, dtype=np.intc), logits))))
    assert b"".join(PIECES[token] for token in ids[PROMPT:]) == b"path.join"


def test_no_qualifier_no_processor(index: PieceIndex, dots: DotIndex) -> None:
    assert attribute_processor(index, dots, (), (), "", PROMPT) is None
    assert attribute_processor(index, dots, (("1x", ("a",)),), (), "", PROMPT) is None


def test_a_processor_error_falls_back_to_free_decoding_with_one_log_line(
    index: PieceIndex, dots: DotIndex, caplog: pytest.LogCaptureFixture
) -> None:
    made = processor(index, dots)
    short = np.zeros(5, dtype=np.float32)  # not the vocabulary's size
    ids = [9, 9, 9, *ids_of(b"os", b".")]
    with caplog.at_level(logging.WARNING, logger="model.runtime.constrain_attributes"):
        out = made(np.asarray(ids, dtype=np.intc), short)
        made(np.asarray([*ids, 8], dtype=np.intc), short)
    assert out is short and made.free and not np.isinf(short).any()
    assert len([r for r in caplog.records if "decoding freely" in r.message]) == 1


def test_an_allowed_set_another_processor_emptied_is_left_alone(
    index: PieceIndex, dots: DotIndex
) -> None:
    made = processor(index, dots)
    logits = np.full(len(PIECES), -np.inf, dtype=np.float32)
    logits[PIECES.index(b"environ")] = 1.0  # all another processor left
    out = made(np.asarray([9, 9, 9, *ids_of(b"os", b".")], dtype=np.intc), logits)
    assert out[PIECES.index(b"environ")] == 1.0 and made.steps == 0


class _FakeLlama:
    """Just what ``WorkerConstraints`` reads of a ``Llama`` and of ``llama_cpp``."""

    def __init__(self) -> None:
        self._model = self
        self.vocab = object()

    def n_vocab(self) -> int:
        return len(PIECES)

    def llama_token_to_piece(self, vocab: object, token: int, buffer: Any, *rest: Any) -> int:
        import ctypes

        ctypes.memmove(buffer, PIECES[token], len(PIECES[token]))
        return len(PIECES[token])


def test_the_worker_builds_both_processors_from_a_complete_message() -> None:
    fake = _FakeLlama()
    constraints = WorkerConstraints(fake, fake)
    assert constraints.processors({}, PROMPT) == []
    message = {
        "names": {"names": ["path"], "typed": "", "lead": ""},
        "qualified": {"names": {"os": ["path", "sep"]}, "private": ["os"], "line": "x = "},
    }
    found = constraints.processors(message, PROMPT)
    assert [type(p).__name__ for p in found] == ["NameProcessor", "AttributeProcessor"]
    only = constraints.processors({"qualified": message["qualified"]}, PROMPT)
    assert len(only) == 1 and allowed_after(only[0], b"os", b".") is not None  # type: ignore[arg-type]


def test_the_backend_sends_what_the_worker_reads() -> None:
    known = QualifiedNames((("os", ("path", "sep")),), frozenset({"os"}), "x = ")
    request = CompletionRequest(prompt=("x = ",), qualified=known)
    message = json.loads(json.dumps(_names_message(request)))
    assert "names" not in message  # no first-identifier constraint asked for
    fake = _FakeLlama()
    (made,) = WorkerConstraints(fake, fake).processors(message, PROMPT)
    assert isinstance(made, AttributeProcessor)
    allowed = allowed_after(made, b"os", b".")
    assert allowed is not None and {b"path", b"sep", b"_exit"} <= allowed  # os: private free
    assert _names_message(CompletionRequest(prompt=("x",))) == {}


def test_a_malformed_qualified_spec_is_logged_and_decoding_stays_free(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = _FakeLlama()
    with caplog.at_level(logging.WARNING, logger="model.runtime.worker_constraints"):
        assert WorkerConstraints(fake, fake).attributes({"names": ["os"]}, PROMPT) is None
    assert "attributes not constrained" in caplog.text


# -- the reference: no generated attribute of a qualifier outside its names ------------------

_REF_TABLE = {b"os": (b"pa", b"p_a", b"s"), b"os.pa": (b"x",)}
_PARTS = [b"o", b"s", b"os", b"p", b"a", b"pa", b"_", b"x", b".", b" ", b"("]
# Pieces are drawn from parts with dots and qualifiers more often than the rest.
_DRAWN = [*_PARTS, b".", b".", b"os", b"os"]
_CHAIN_BEFORE = re.compile(rb"(?<![\w.)\]}'\"])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\Z")
_WORD = re.compile(rb"\w*")


def _violates(text: bytes, generated_from: int) -> bool:
    """Whether a generated dot after a qualifier starts an attribute it lacks."""
    for dot in range(generated_from, len(text)):
        if text[dot : dot + 1] != b".":
            continue
        chain = _CHAIN_BEFORE.search(text, 0, dot)
        names = _REF_TABLE.get(chain.group(1)) if chain else None
        if names is None:
            continue
        word = _WORD.match(text, dot + 1)
        assert word is not None
        written = word.group()
        if word.end() == len(text):
            if not any(name.startswith(written) for name in names):
                return True
        elif written not in names:
            return True
    return False


def _one_attribute_dot(piece: bytes) -> bool:
    return len(re.findall(rb"\.(?=.)", piece, re.S)) <= 1


@given(
    pieces=st.lists(
        st.lists(st.sampled_from(_DRAWN), min_size=1, max_size=3)
        .map(b"".join)
        .filter(_one_attribute_dot),
        min_size=1,
        max_size=40,
    ),
    line=st.sampled_from([b"", b"x = ", b"x = o", b"x = os", b"f(os", b"x = os."]),
    data=st.data(),
)
def test_allowed_tokens_match_the_definition_along_a_generation(
    pieces: list[bytes], line: bytes, data: st.DataObject
) -> None:
    vocabulary = [b"", *_PARTS, *pieces]  # every single part: a legal way on always exists
    table = [(q.decode(), [n.decode() for n in names]) for q, names in _REF_TABLE.items()]
    made = attribute_processor(
        PieceIndex(vocabulary), DotIndex(vocabulary), table, (), line.decode(), PROMPT
    )
    assert made is not None
    ids = [0, 0, 0]
    text = line
    for _ in range(data.draw(st.integers(0, 6))):
        logits = made(np.asarray(ids, dtype=np.intc), np.zeros(len(vocabulary), np.float32))
        token = data.draw(st.sampled_from(np.flatnonzero(np.isfinite(logits)).tolist()))
        if not vocabulary[token]:
            return  # the generation ended
        ids.append(token)
        text += vocabulary[token]
    logits = made(np.asarray(ids, dtype=np.intc), np.zeros(len(vocabulary), np.float32))
    allowed = {t for t in range(1, len(vocabulary)) if np.isfinite(logits[t])}
    expected = {
        t for t in range(1, len(vocabulary)) if not _violates(text + vocabulary[t], len(line))
    }
    assert allowed == expected
