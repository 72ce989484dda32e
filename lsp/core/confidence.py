"""How likely a verified candidate is to be right, from what the server already knows.

A show-or-hold decision (``completion.minConfidence``) and the choice among candidates
(``lsp.core.choose``) read one number per candidate: a logistic regression over cheap
features (the model's token log-probabilities, the verdict, the text's length, where the
cursor is, whether earlier candidates said the same, what the prompt held), with a
calibration table mapping its output to the rate at which such candidates were right on
held-out holes. The weights ship as JSON (``lsp/core/data/confidence.json``, written by
``make confidence``: ``bench/confidence_data.py`` and ``model/training/confidence_fit.py``);
inference is numpy, no pickle and nothing of scikit-learn on the serving path.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

from lsp.core.pipeline_types import Cursor
from model.runtime.api import TokenLogprobs

FloatArray = npt.NDArray[np.float64]

# The features, in the order of the shipped coefficients (the JSON names them; a mismatch
# refuses to load). The five from log-probabilities are NaN where the backend reports none
# (a remote server): the model then reads their training means, no evidence either way.
FEATURES: tuple[str, ...] = (
    "lp_mean",  # mean token log-probability of the candidate's generation
    "lp_min",  # its weakest token
    "lp_first",  # its first token
    "lp_sum",  # the whole generation's log-probability
    "log_tokens",  # log(1 + generated tokens)
    "log_chars",  # log(1 + characters of the text, surrounding blanks left out)
    "lines",  # its non-blank lines (at most 10)
    "repair",  # verification cut it to its longest passing prefix
    "sampled",  # a sampled candidate, not the greedy first one
    "rejected_before",  # candidates of this completion that failed verification before it
    "agree",  # share of this completion's earlier candidates whose first line is its own
    "typed",  # code before the cursor on its line
    "mid_line",  # code after the cursor on its line
    "after_colon",  # the code line above opens a block
    "repeats_below",  # one of its lines is the next line of code below the cursor's
    "comment",  # it starts with a comment
    "context",  # repository snippets were in the prompt
    "constrained",  # decoding was restricted to the names legal at the cursor
)
WEIGHTS_FILE = "confidence.json"


def _first_line(text: str) -> str:
    """The first non-blank line, stripped ("" when there is none)."""
    for line in text.split("\n"):
        if line.strip():
            return line.strip()
    return ""


@dataclass(frozen=True)
class Scene:
    """What every candidate of one completion shares: the cursor's place and the prompt."""

    typed: bool = False
    mid_line: bool = False
    after_colon: bool = False
    next_line: str = ""  # the first non-blank line below the cursor's, stripped
    context: bool = False
    constrained: bool = False

    @staticmethod
    def of(cursor: Cursor, snippets_used: Sequence[str], constrained: bool) -> Scene:
        """The scene at ``cursor`` (the one the model completes: a line-start view's)."""
        text, offset = cursor.text, cursor.offset
        start = text.rfind("\n", 0, offset) + 1
        end = text.find("\n", offset)
        end = len(text) if end < 0 else end
        above = text[:start].rstrip().rsplit("\n", 1)[-1]
        below = text[end + 1 :] if end < len(text) else ""
        return Scene(
            typed=bool(text[start:offset].strip()),
            mid_line=bool(text[offset:end].strip()),
            after_colon=above.split("#", 1)[0].rstrip().endswith(":"),
            next_line=_first_line(below[:2000]),
            context=bool(snippets_used),
            constrained=constrained,
        )


def features(
    scene: Scene,
    text: str,
    logprobs: TokenLogprobs | None,
    *,
    repair: bool,
    attempt: int,
    rejected_before: int,
    earlier: Sequence[str],
) -> tuple[float, ...]:
    """One candidate's feature vector, in ``FEATURES`` order.

    ``earlier`` are the raw generations of this completion before this candidate (whatever
    became of them): agreement is counted against those only, so a candidate's features
    are fixed when it is generated and a recorded run can replay any threshold.
    """
    nan = math.nan
    if logprobs is None or logprobs.count <= 0:
        mean = lowest = first = total = tokens = nan
    else:
        mean, lowest, first = logprobs.mean, logprobs.minimum, logprobs.first
        total, tokens = logprobs.mean * logprobs.count, math.log1p(logprobs.count)
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    head = lines[0] if lines else ""
    agree = sum(_first_line(raw) == head for raw in earlier) / len(earlier) if earlier else 0.0
    return (
        mean,
        lowest,
        first,
        total,
        tokens,
        math.log1p(len(text.strip())),
        float(min(len(lines), 10)),
        float(repair),
        float(attempt > 0),
        float(rejected_before),
        agree,
        float(scene.typed),
        float(scene.mid_line),
        float(scene.after_colon),
        float(bool(scene.next_line) and scene.next_line in lines),
        float(head.startswith("#")),
        float(scene.context),
        float(scene.constrained),
    )


@dataclass(frozen=True)
class ConfidenceModel:
    """Standardised logistic regression plus a monotone calibration table, from JSON.

    ``probability`` = interp(sigmoid(w . (x - mean) / scale + b), table); an empty table
    leaves the sigmoid as it is.
    """

    names: tuple[str, ...]
    means: FloatArray
    scales: FloatArray
    coefficients: FloatArray
    intercept: float
    table_x: FloatArray
    table_y: FloatArray
    # The operating point the calibration data chose, and what it measured there.
    recommended: float = 0.0
    meta: Mapping[str, Any] | None = None

    def raw_probability(self, row: Sequence[float]) -> float:
        """The logistic regression's output, before calibration."""
        x = np.asarray(row, dtype=np.float64)
        missing = np.isnan(x)
        if missing.any():
            x = np.where(missing, self.means, x)
        z = float(np.dot(self.coefficients, (x - self.means) / self.scales)) + self.intercept
        # Written this way round so neither branch overflows.
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        ez = math.exp(z)
        return ez / (1.0 + ez)

    def probability(self, row: Sequence[float]) -> float:
        """The calibrated probability that a candidate with these features is right."""
        raw = self.raw_probability(row)
        if self.table_x.size == 0:
            return raw
        return float(np.interp(raw, self.table_x, self.table_y))

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> ConfidenceModel:
        """Read the weights file's object; ValueError naming what is wrong."""
        names = tuple(data["features"])
        if names != FEATURES:
            raise ValueError(
                "confidence weights were trained on other features: "
                f"{', '.join(names)} (this code computes {', '.join(FEATURES)})"
            )
        arrays = [np.asarray(data[key], dtype=np.float64) for key in ("means", "scales", "coef")]
        if any(array.shape != (len(names),) for array in arrays):
            raise ValueError("confidence weights: means, scales and coef need one value a feature")
        means, scales, coefficients = arrays
        if not np.all(np.isfinite(arrays)) or np.any(scales <= 0):
            raise ValueError("confidence weights: non-finite values or a scale <= 0")
        table = data.get("calibration") or {"x": [], "y": []}
        table_x = np.asarray(table["x"], dtype=np.float64)
        table_y = np.asarray(table["y"], dtype=np.float64)
        if table_x.shape != table_y.shape or np.any(np.diff(table_x) < 0):
            raise ValueError("confidence weights: the calibration table's x must be sorted")
        return ConfidenceModel(
            names=names,
            means=means,
            scales=scales,
            coefficients=coefficients,
            intercept=float(data["intercept"]),
            table_x=table_x,
            table_y=table_y,
            recommended=float(data.get("recommended_min_confidence", 0.0)),
            meta=data.get("training"),
        )

    def as_json(self) -> dict[str, Any]:
        """The weights file's object (what ``from_json`` reads)."""
        return {
            "features": list(self.names),
            "means": self.means.tolist(),
            "scales": self.scales.tolist(),
            "coef": self.coefficients.tolist(),
            "intercept": self.intercept,
            "calibration": {"x": self.table_x.tolist(), "y": self.table_y.tolist()},
            "recommended_min_confidence": self.recommended,
            "training": dict(self.meta or {}),
        }


@functools.cache
def shipped() -> ConfidenceModel:
    """The weights shipped with the server (read once)."""
    text = resources.files("lsp.core").joinpath("data", WEIGHTS_FILE).read_text("utf-8")
    return ConfidenceModel.from_json(json.loads(text))
