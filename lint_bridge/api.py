"""The lint bridge's plain types: an edit, the reasons a candidate fails, and the verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ReasonKind = Literal["syntax", "ruff", "unknown-symbol", "unchecked"]
VerdictKind = Literal["accept", "repair", "reject"]


class LintBridgeError(Exception):
    """Base of the lint bridge's errors; the message is one clear line."""


@dataclass(frozen=True)
class Splice:
    """Replace ``buffer[start:end]`` with ``text`` (``start == end``: a plain insertion).

    Offsets are string indexes into the buffer (code points); the language server
    converts LSP positions with the document's position codec before building one.
    """

    start: int
    end: int
    text: str

    def apply(self, buffer: str) -> str:
        """The buffer after the edit."""
        if not 0 <= self.start <= self.end <= len(buffer):
            raise LintBridgeError(
                f"edit range {self.start}..{self.end} is outside a {len(buffer)}-character buffer"
            )
        return buffer[: self.start] + self.text + buffer[self.end :]

    @property
    def new_end(self) -> int:
        """Where the inserted text ends in the edited buffer."""
        return self.start + len(self.text)

    @property
    def delta(self) -> int:
        """How far text after the edit moved (positive: to the right)."""
        return len(self.text) - (self.end - self.start)


@dataclass(frozen=True)
class Reason:
    """Why a candidate failed one check. ``line``/``column`` are 0-based in the edited buffer."""

    kind: ReasonKind
    code: str
    message: str
    symbol: str | None = None
    line: int = 0
    column: int = 0

    @property
    def label(self) -> str:
        """The machine-readable tag: ``syntax``, ``ruff:F821``, ``unknown-symbol:os.path.x``."""
        if self.kind == "ruff":
            return f"ruff:{self.code}"
        if self.kind == "unknown-symbol":
            return f"unknown-symbol:{self.symbol}"
        return self.kind

    def as_json(self) -> dict[str, object]:
        """The ``apprentice check --json`` reason object."""
        return {
            "kind": self.kind,
            "code": self.code,
            "message": self.message,
            "symbol": self.symbol,
            "line": self.line,
            "column": self.column,
        }


@dataclass(frozen=True)
class Document:
    """The buffer a candidate goes into. ``path`` locates ruff's configuration (as ruff does)."""

    path: Path
    text: str
    language: str
    version: int | None = None


@dataclass(frozen=True)
class CheckSettings:
    """Which checks run; each can be switched off."""

    syntax: bool = True
    ruff: bool = True
    symbols: bool = True
    ruff_timeout_s: float = 2.0


@dataclass
class Verdict:
    """The outcome for one candidate: accept, repair (with the shorter text) or reject."""

    verdict: VerdictKind
    text: str | None
    reasons: list[Reason] = field(default_factory=list)
    elapsed_ms: float = 0.0
    unchecked: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        """The ``apprentice check --json`` object."""
        return {
            "verdict": self.verdict,
            "text": self.text,
            "reasons": [reason.as_json() for reason in self.reasons],
            "elapsed_ms": round(self.elapsed_ms, 2),
            "unchecked": self.unchecked,
        }
