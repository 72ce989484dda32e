"""Log-probabilities of generated tokens, summarised for the usage record of a completion.

How sure the model was of what it wrote (the mean, the weakest token, the first token) is
what a show-or-hold decision and a choice among candidates read. The worker measures each
token under the model's own distribution: the log-softmax of the raw logits the token was
sampled from, before any constraint or temperature, so a token forced by constrained
decoding shows as the unlikely token it was.

llama-cpp-python keeps no logits unless ``logits_all`` is on (a vocabulary-sized row per
prompt token); the row a token is sampled from is still in llama.cpp's context when the
token is handed out, so it is read there (``llama_get_logits_ith(ctx, -1)``), once.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

FloatRow = npt.NDArray[np.float32]


def token_logprob(logits: FloatRow, token: int, scratch: FloatRow) -> float:
    """``log_softmax(logits)[token]``, using ``scratch`` (same shape) to spare an allocation."""
    peak = float(logits.max())
    np.subtract(logits, peak, out=scratch)
    np.exp(scratch, out=scratch)
    # numpy sums float32 pairwise: within 1e-6 of a float64 sum here, and a fifth faster.
    return float(logits[token]) - peak - math.log(float(scratch.sum()))


class LogprobSummary:
    """Collects one generation's token log-probabilities; ``as_json`` is what usage carries."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.lowest = 0.0
        self.first = 0.0

    def add(self, logprob: float) -> None:
        """One more generated token's log-probability."""
        if self.count == 0:
            self.first = self.lowest = logprob
        self.lowest = min(self.lowest, logprob)
        self.total += logprob
        self.count += 1

    def as_json(self) -> dict[str, Any] | None:
        """``{"mean", "minimum", "first", "count"}``, or None when no token was scored."""
        if self.count == 0:
            return None
        return {
            "mean": self.total / self.count,
            "minimum": self.lowest,
            "first": self.first,
            "count": self.count,
        }


class TokenScorer:
    """Scores each sampled token of one ``Llama`` from the logits it was sampled from.

    A failure to read them (a build that keeps no logits) turns scoring off for the rest
    of the generation with one log line: the completion itself never depends on it.
    """

    def __init__(self, llm: Any, llama_cpp: Any) -> None:
        self._llm = llm
        self._llama_cpp = llama_cpp
        self._n_vocab = int(llm.n_vocab())
        self._scratch: FloatRow = np.empty(self._n_vocab, dtype=np.float32)
        self.summary = LogprobSummary()
        self._broken = False

    def score(self, token: int) -> None:
        """Add ``token``'s log-probability; call before the next token is evaluated."""
        if self._broken:
            return
        try:
            pointer = self._llama_cpp.llama_get_logits_ith(self._llm._ctx.ctx, -1)
            logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
            self.summary.add(token_logprob(logits, token, self._scratch))
        except Exception as error:  # scoring is a nicety: the generation goes on without it
            self._broken = True
            self.summary = LogprobSummary()
            logger.warning("token log-probabilities unavailable: %s", error)
