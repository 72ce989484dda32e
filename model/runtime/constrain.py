"""Constrained decoding of names: the first identifier a generation writes is one of a set.

Where the set of legal names at the cursor is complete (the attributes of a module the
resolver reads, the names after ``from X import``), the model may only write a token that
continues some legal name; once the identifier ends (a token continues with ``(``, ``.``,
a space, a line break...), decoding is free again. Names then exist by construction
instead of being rejected after the fact.

It works on bytes: a token's piece may split a name anywhere, even inside a multi-byte
character, and bytes compare the same whatever the split. An identifier byte is an ASCII
letter, digit or underscore, or any byte of a non-ASCII character (Python allows letters
there; which ones is the name set's business). The vocabulary is indexed once per model
(``PieceIndex``): each piece by its shape, (leading blank, identifier run, whether a
non-identifier byte follows), so the tokens allowed at a step are found by looking up the
prefixes of the few names still possible rather than by testing every token.

``NameProcessor`` is a llama-cpp-python logits processor: ``(input_ids, logits) ->
logits``, the tokens that would leave every legal name set to -inf. Never pass
``logit_bias`` with it (llama-cpp-python 0.3.x drops both). Any error in it turns the
constraint off for the rest of the generation with one log line: a completion never fails
because of it.

After a ``qualifier.`` the generation itself writes, ``model.runtime.constrain_attributes``
restricts the attribute the same way, with this module's piece index; the worker builds
both processors through ``model.runtime.worker_constraints``.
"""

from __future__ import annotations

import ctypes
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

_IDENT = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") | frozenset(
    range(0x80, 0x100)
)
# A piece's leading blank and the identifier run after it (the bytes of ``_IDENT``).
_SHAPE = re.compile(rb"([ \t]*)([A-Za-z0-9_\x80-\xff]*)")
# The longest piece llama.cpp writes for one token is far below this.
_PIECE_BUFFER = 256

Ids = npt.NDArray[np.int32]
Shape = tuple[bytes, bytes, bool]


def is_identifier_byte(byte: int) -> bool:
    """Whether ``byte`` may be part of a Python identifier (any byte of a non-ASCII one)."""
    return byte in _IDENT


def shape_of(piece: bytes) -> Shape:
    """(leading spaces or tabs, the identifier run after them, whether anything follows it).

    Anything that follows starts with a byte that is not an identifier byte, so a piece
    whose shape ends True closes the identifier it writes. An empty piece (a control
    token) is ``(b"", b"", True)``: it ends whatever came before.
    """
    match = _SHAPE.match(piece)
    assert match is not None  # both groups may be empty
    return match.group(1), match.group(2), match.end() < len(piece) or not piece


class PieceIndex:
    """A vocabulary's token pieces grouped by shape; built once per loaded model."""

    def __init__(self, pieces: Sequence[bytes]) -> None:
        self.size = len(pieces)
        groups: dict[Shape, list[int]] = {}
        enders: list[int] = []
        for token, piece in enumerate(pieces):
            groups.setdefault(shape_of(piece), []).append(token)
            if not piece or piece[0] not in _IDENT:
                enders.append(token)
        # Lists, not arrays: most shapes hold one piece, and a step looks up few of them.
        self._groups = groups
        # Pieces that end an identifier written so far: empty ones, and those starting
        # with a byte that cannot continue it.
        self.enders: Ids = np.asarray(enders, dtype=np.int32)
        self.pieces = list(pieces)

    def tokens(self, shape: Shape) -> list[int]:
        """Ids of the pieces with exactly this shape."""
        return self._groups.get(shape, [])


def llama_pieces(llm: Any, llama_cpp: Any) -> list[bytes]:
    """Every token's piece as the worker writes it (special tokens as empty pieces)."""
    vocab = llm._model.vocab
    buffer = ctypes.create_string_buffer(_PIECE_BUFFER)
    pieces: list[bytes] = []
    for token in range(int(llm.n_vocab())):
        length = llama_cpp.llama_token_to_piece(vocab, token, buffer, _PIECE_BUFFER, 0, False)
        pieces.append(buffer.raw[:length] if length > 0 else b"")
    return pieces


@dataclass(frozen=True)
class NameSet:
    """The rest of each allowed name after what the prompt already ends with, as bytes."""

    rests: tuple[bytes, ...]
    lead: bytes

    def live(self, written: bytes) -> list[bytes]:
        """What each name still possible after ``written`` (of the identifier) has left."""
        return [rest[len(written) :] for rest in self.rests if rest.startswith(written)]


def allowed_tokens(index: PieceIndex, names: NameSet, written: bytes) -> Ids | None:
    """Ids of the tokens that keep a legal name possible after ``written`` was generated.

    None: the identifier has ended (decoding is free). An empty array: no token can go
    on (the caller then gives up the constraint).
    """
    lead = names.lead
    if len(written) < len(lead):
        if not lead.startswith(written):
            return None  # the model left the constraint's path (it cannot, but be safe)
        return _after_lead(index, names, lead[len(written) :])
    ident = written[len(lead) :]
    if any(byte not in _IDENT for byte in ident):
        return None
    return continuing_tokens(index, names, ident)


def continuing_tokens(index: PieceIndex, names: NameSet, ident: bytes) -> Ids:
    """Tokens that continue or close a legal name, ``ident`` written of it so far."""
    found: list[int] = []
    complete = False
    prefixes: set[bytes] = set()
    for rest in names.live(ident):
        if not rest:
            complete = True  # anything that ends an identifier may follow
            continue
        prefixes.update(rest[:length] for length in range(1, len(rest) + 1))
        found += index.tokens((b"", rest, True))
    for prefix in prefixes:
        found += index.tokens((b"", prefix, False))
    ids = np.asarray(found, dtype=np.int32)
    return np.concatenate([ids, index.enders]) if complete else ids


def _after_lead(index: PieceIndex, names: NameSet, lead_rest: bytes) -> Ids:
    """Tokens that write (part of) the blank still due, or all of it and a name's start."""
    found: list[int] = []
    for length in range(1, len(lead_rest) + 1):
        found += index.tokens((lead_rest[:length], b"", False))
    prefixes: set[bytes] = set()
    for rest in names.live(b""):
        found += index.tokens((lead_rest, rest, True))
        prefixes.update(rest[:length] for length in range(1, len(rest) + 1))
    for prefix in prefixes:
        found += index.tokens((lead_rest, prefix, False))
    return np.asarray(found, dtype=np.int32)


class SafeProcessor:
    """A llama-cpp-python logits processor that never costs the completion: once ``free``
    (its constraint is over, or it failed, with one log line), logits pass untouched."""

    what = "constrained decoding"  # named in the failure's log line
    free = False

    def __call__(
        self, input_ids: npt.NDArray[np.intc], logits: npt.NDArray[np.single]
    ) -> npt.NDArray[np.single]:
        if self.free:
            return logits
        try:
            return self._constrain(input_ids, logits)
        except Exception as error:  # never cost the completion: decode freely instead
            self.free = True
            logger.warning("%s failed (%s); decoding freely", self.what, error)
            return logits

    def _constrain(
        self, input_ids: npt.NDArray[np.intc], logits: npt.NDArray[np.single]
    ) -> npt.NDArray[np.single]:
        raise NotImplementedError


class NameProcessor(SafeProcessor):
    """A llama-cpp-python logits processor that keeps the first identifier a legal name.

    ``prompt_tokens`` is the prompt's length: the generated tokens are the ones
    ``input_ids`` holds past it. Build it with ``name_processor``.
    """

    def __init__(self, index: PieceIndex, names: NameSet, prompt_tokens: int) -> None:
        self._index = index
        self._names = names
        self._prompt_tokens = prompt_tokens
        self._written = b""
        self._seen = 0
        self.free = False
        self.steps = 0  # tokens it constrained (for tests and logs)

    def _constrain(
        self, input_ids: npt.NDArray[np.intc], logits: npt.NDArray[np.single]
    ) -> npt.NDArray[np.single]:
        generated = input_ids[self._prompt_tokens + self._seen :]
        for token in generated.tolist():
            piece = self._index.pieces[token]
            if not piece:
                self.free = True  # a control token ends the identifier
                return logits
            self._written += piece
        self._seen += len(generated)
        allowed = allowed_tokens(self._index, self._names, self._written)
        if allowed is None:
            self.free = True
            return logits
        if len(allowed) == 0:
            self.free = True
            logger.warning("no token continues a legal name here; decoding freely")
            return logits
        if len(logits) != self._index.size:
            raise ValueError(f"{len(logits)} logits for a {self._index.size}-token vocabulary")
        kept = logits[allowed]
        logits.fill(-np.inf)
        logits[allowed] = kept
        self.steps += 1
        return logits


def name_processor(
    index: PieceIndex, names: Iterable[str], typed: str, lead: str, prompt_tokens: int
) -> NameProcessor | None:
    """The processor for one generation; None (free decoding) when no name fits ``typed``."""
    encoded = typed.encode()
    rests = tuple(
        sorted({name.encode()[len(encoded) :] for name in names if name.startswith(typed)})
    )
    if not rests:
        return None
    return NameProcessor(index, NameSet(rests, lead.encode()), prompt_tokens)
