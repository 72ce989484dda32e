"""Which verified candidate a completion shows, and whether it shows one at all.

Each verified candidate gets a probability of being right (``lsp.core.confidence``). The
pipeline goes on generating while fewer than ``choose_among`` candidates verified or the
best of them is below ``min_confidence`` (its ``candidates`` still bound the tries); then
the highest probability wins (ties: the higher mean token log-probability, then the
earlier candidate), and an automatic request holds it when it is below ``min_confidence``.
With ``min_confidence`` 0 and ``choose_among`` 1 this is first-come, as before.

A candidate without token log-probabilities (a remote server reports none) is never held
and never makes the search go on: the weights were calibrated on the local model's
log-probabilities, and without them the estimate says more about the calibration model's
base rate than about the candidate. Among such candidates the earliest is shown, as before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from lsp.core.confidence import ConfidenceModel, Scene, features
from model.runtime.api import Usage


@dataclass
class Considered:
    """A verified (or repaired) candidate, scored once its generation has ended."""

    text: str
    verdict: str  # accept | repair | unchecked
    order: int  # generation order within the completion
    usage: Usage  # its generation's: the token log-probabilities arrive as it ends
    scene: Scene
    attempt: int  # candidates of its scene generated before it
    rejected_before: int
    earlier: tuple[str, ...]  # those candidates' raw text
    asks_met: bool = True
    _row: tuple[float, ...] | None = field(default=None, repr=False)
    _probability: float | None = field(default=None, repr=False)

    def features(self) -> tuple[float, ...]:
        if self._row is None:
            self._row = features(
                self.scene,
                self.text,
                self.usage.logprobs,
                repair=self.verdict == "repair",
                attempt=self.attempt,
                rejected_before=self.rejected_before,
                earlier=self.earlier,
            )
        return self._row

    def probability(self, model: ConfidenceModel) -> float:
        if self._probability is None:
            self._probability = model.probability(self.features())
        return self._probability

    @property
    def mean_logprob(self) -> float | None:
        logprobs = self.usage.logprobs
        return None if logprobs is None or logprobs.count <= 0 else logprobs.mean

    def confident(self, model: ConfidenceModel, min_confidence: float) -> bool:
        """Whether it may be shown at ``min_confidence`` (always without log-probabilities)."""
        return self.mean_logprob is None or self.probability(model) >= min_confidence


def ranking(model: ConfidenceModel, candidate: Considered) -> tuple[float, float, int]:
    """Sort key, highest first: probability, then mean log-probability, then earlier."""
    mean = candidate.mean_logprob
    return (candidate.probability(model), -math.inf if mean is None else mean, -candidate.order)


def best(model: ConfidenceModel, pool: Sequence[Considered]) -> Considered | None:
    """The candidate the score prefers (None for an empty pool); the earliest one where a
    candidate has no log-probabilities, since the score without them is no evidence."""
    if any(c.mean_logprob is None for c in pool):
        return min(pool, key=lambda c: c.order, default=None)
    return max(pool, key=lambda c: ranking(model, c), default=None)


class Chooser:
    """Collects one completion's verified candidates and decides which, if any, is shown."""

    def __init__(
        self, model: ConfidenceModel, *, min_confidence: float, choose_among: int, hold: bool
    ) -> None:
        self.model = model
        self.min_confidence = min_confidence
        self.choose_among = max(1, choose_among)
        self.hold = hold and min_confidence > 0
        self.verified: list[Considered] = []  # accepted (or unchecked) and held back by asks
        self.repair: Considered | None = None  # the longest repair offered
        self._scene = Scene()
        self._raws: list[str] = []  # this scene's generations, in order
        self._attempt = -1
        self._order = 0

    def scene(self, scene: Scene) -> None:
        """A new cursor (the next line's, when the model ended the line): attempts restart."""
        self._scene, self._raws, self._attempt = scene, [], -1

    def begin(self) -> None:
        """A candidate's generation starts."""
        self._attempt += 1

    def generated(self, raw: str) -> None:
        """A candidate's generation ended with ``raw``."""
        self._raws.append(raw)

    def _considered(self, text: str, verdict: str, usage: Usage, asks_met: bool) -> Considered:
        attempt = max(0, self._attempt)
        passed = {c.attempt for c in self.verified if c.scene is self._scene}
        self._order += 1
        return Considered(
            text=text,
            verdict=verdict,
            order=self._order,
            usage=usage,
            scene=self._scene,
            attempt=attempt,
            rejected_before=attempt - len({a for a in passed if a < attempt}),
            earlier=tuple(self._raws[:attempt]),
            asks_met=asks_met,
        )

    def add(self, text: str, verdict: str, usage: Usage, *, asks_met: bool = True) -> None:
        """A candidate that verified (``asks_met`` False: it does not do what is asked)."""
        self.verified.append(self._considered(text, verdict, usage, asks_met))

    def offer_repair(self, text: str, usage: Usage) -> None:
        """A rejected candidate's longest passing prefix; the longest one is kept."""
        if self.repair is None or len(text) > len(self.repair.text):
            self.repair = self._considered(text, "repair", usage, True)

    def verified_at_cursor(self, text: str) -> bool:
        """Whether a candidate of the current scene verified as ``text``."""
        return any(c.text == text and c.scene is self._scene for c in self.verified)

    def enough(self) -> bool:
        """Whether to stop generating: enough candidates verified, the best one confident."""
        accepted = [c for c in self.verified if c.asks_met]
        if len(accepted) < self.choose_among:
            return False
        if not self.hold:
            return True
        return any(c.confident(self.model, self.min_confidence) for c in accepted)

    def pool(self) -> list[Considered]:
        """What the choice is among: the candidates that do what is asked, else those that
        verified, else the repair."""
        asked = [c for c in self.verified if c.asks_met]
        if asked or self.verified:
            return asked or list(self.verified)
        return [self.repair] if self.repair is not None else []

    def decide(self) -> tuple[Considered | None, bool]:
        """(the chosen candidate, whether it is held); (None, False) without one."""
        chosen = best(self.model, self.pool())
        if chosen is None:
            return None, False
        return chosen, self.hold and not chosen.confident(self.model, self.min_confidence)

    def considered(self) -> list[Considered]:
        """Every candidate scored, in generation order (the repair last)."""
        extra = [self.repair] if self.repair is not None else []
        return sorted([*self.verified, *extra], key=lambda c: c.order)


class Scored(Protocol):
    """A recorded candidate, as ``replay`` reads it (``lsp.core.pipeline_types.Alternative``)."""

    @property
    def confidence(self) -> float: ...
    @property
    def mean_logprob(self) -> float | None: ...
    @property
    def verdict(self) -> str: ...
    @property
    def asks_met(self) -> bool: ...
    @property
    def attempt(self) -> int: ...


def replay(recorded: Sequence[Scored], min_confidence: float, candidates: int) -> int | None:
    """Which recorded candidate an automatic request would show at ``min_confidence`` with
    ``candidates`` tries (its index), or None where it shows nothing.

    ``recorded`` are a completion's alternatives from a run that tried every candidate
    (``choose_among`` as large as ``candidates``); features never look at later candidates,
    so each one's confidence is what the pipeline would have had when it was generated, and
    ``Chooser``'s rule replays for any threshold from that one run: the first candidate that
    verifies at the threshold or above ends the search and is shown; otherwise the best of
    the pool (``Chooser.pool``) is shown if it reaches the threshold, else held. A candidate
    without log-probabilities counts as reaching any threshold, as in ``Chooser``.
    """

    def confident(c: Scored) -> bool:
        return c.mean_logprob is None or c.confidence >= min_confidence

    tried = [(i, c) for i, c in enumerate(recorded) if c.attempt < candidates]
    for i, c in tried:
        if c.verdict != "repair" and c.asks_met and confident(c):
            return i
    verified = [(i, c) for i, c in tried if c.verdict != "repair"]
    pool = [(i, c) for i, c in verified if c.asks_met] or verified
    pool = pool or [(i, c) for i, c in tried if c.verdict == "repair"]
    if not pool:
        return None

    def key(item: tuple[int, Scored]) -> tuple[float, float, int]:
        i, c = item
        mean = -math.inf if c.mean_logprob is None else c.mean_logprob
        return (c.confidence, mean, -i)

    if any(c.mean_logprob is None for _, c in pool):
        chosen, best_one = pool[0]  # no score to choose by: the earliest, as Chooser does
    else:
        chosen, best_one = max(pool, key=key)
    return chosen if confident(best_one) else None
