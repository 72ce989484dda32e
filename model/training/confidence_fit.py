"""Fits the show-or-hold classifier (``lsp.core.confidence``) on recorded candidates.

Input: one record per hole, its verified candidates in generation order, each with its
feature vector and whether it was right (``bench/confidence_data.py`` collects them by
running the real pipeline). Output: the JSON weights the server reads, with what the fit
measured. scikit-learn does the fitting (the ``train`` extra); nothing here is imported on
the serving path, which reads the weights with numpy alone.

- A logistic regression on standardised features (L2, C = 1), missing log-probabilities
  read as the column's mean, as inference does.
- Calibration: isotonic regression on out-of-fold predictions (5 folds grouped by file),
  kept as a table of (raw, calibrated) points the server interpolates, where it lowers
  the held-out log-loss; otherwise (a few hundred holes give a stepped table whose
  extreme steps cost more than they fix) the regression's own probabilities ship, with
  an empty table, and the report says which.
- Honest figures: a split by file (a quarter of the files held out) gives AUC, log-loss and
  Brier score of a model fitted on the rest; the curve and the operating point use the
  out-of-fold probabilities, never a candidate's own fit.
- The operating point: the threshold (0.01 steps) with the highest right-when-shown among
  those that keep coverage at or above ``min_coverage`` on the calibration holes, with the
  server's number of candidates replayed (``lsp.core.choose.replay``).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsp.core.choose import replay
from lsp.core.confidence import FEATURES, ConfidenceModel

FloatArray = npt.NDArray[np.float64]
FOLDS = 5
HELD_OUT = 0.25


@dataclass(frozen=True)
class Candidate:
    """One recorded candidate (what ``replay`` reads, plus its features and label)."""

    features: tuple[float, ...]
    right: bool
    verdict: str
    asks_met: bool
    attempt: int
    mean_logprob: float | None
    confidence: float = 0.0  # filled in by the fit being measured


@dataclass(frozen=True)
class Record:
    """One hole: its file (the unit of every split) and its candidates in order."""

    task_id: str
    group: str
    candidates: tuple[Candidate, ...]

    @staticmethod
    def from_json(data: dict[str, Any]) -> Record:
        return Record(
            task_id=str(data["task_id"]),
            group=str(data["path"]),
            candidates=tuple(
                Candidate(
                    features=tuple(math.nan if v is None else float(v) for v in c["features"]),
                    right=bool(c["right"]),
                    verdict=str(c["verdict"]),
                    asks_met=bool(c.get("asks_met", True)),
                    attempt=int(c["attempt"]),
                    mean_logprob=c.get("mean_logprob"),
                )
                for c in data["alternatives"]
            ),
        )


def load_records(path: Path) -> list[Record]:
    """The records of a JSON-lines file (one hole a line)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [Record.from_json(json.loads(line)) for line in lines if line.strip()]


def _matrix(records: Sequence[Record]) -> tuple[FloatArray, FloatArray, list[str]]:
    rows = [c.features for r in records for c in r.candidates]
    x = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURES))
    y = np.asarray([c.right for r in records for c in r.candidates], dtype=np.float64)
    groups = [r.group for r in records for c in r.candidates]
    return x, y, groups


def _fit_raw(x: FloatArray, y: FloatArray) -> ConfidenceModel:
    """The standardised logistic regression alone (an empty calibration table)."""
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():  # a column with no value at all: mean 0
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nan_to_num(np.nanmean(x, axis=0))
    filled = np.where(np.isnan(x), means, x)
    scales = filled.std(axis=0)
    scales[scales < 1e-9] = 1.0  # a constant feature: left as it is, it weighs nothing
    if len(set(y.tolist())) < 2:
        # One label only (a fold of a small run): the rate itself, from no feature.
        rate = min(max(float(y.mean()) if len(y) else 0.5, 1e-3), 1 - 1e-3)
        coefficients, intercept = np.zeros(len(FEATURES)), math.log(rate / (1 - rate))
    else:
        regression = LogisticRegression(C=1.0, max_iter=5000)
        regression.fit((filled - means) / scales, y)
        coefficients = np.asarray(regression.coef_[0], dtype=np.float64)
        intercept = float(regression.intercept_[0])
    return ConfidenceModel(
        names=FEATURES,
        means=means,
        scales=scales,
        coefficients=coefficients,
        intercept=intercept,
        table_x=np.zeros(0),
        table_y=np.zeros(0),
    )


def _raw(model: ConfidenceModel, x: FloatArray) -> FloatArray:
    return np.asarray([model.raw_probability(row) for row in x], dtype=np.float64)


def out_of_fold(x: FloatArray, y: FloatArray, groups: Sequence[str]) -> FloatArray:
    """Each candidate's raw probability from a model fitted without its file."""
    from sklearn.model_selection import GroupKFold

    found = np.zeros(len(y))
    splits = min(FOLDS, len(set(groups)))
    for train, test in GroupKFold(n_splits=splits).split(x, y, groups):
        found[test] = _raw(_fit_raw(x[train], y[train]), x[test])
    return found


def fit(x: FloatArray, y: FloatArray, groups: Sequence[str]) -> tuple[ConfidenceModel, FloatArray]:
    """The model (regression on every row, isotonic table from out-of-fold predictions)
    and the out-of-fold calibrated probabilities."""
    from sklearn.isotonic import IsotonicRegression

    oof = out_of_fold(x, y, groups)
    isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(oof, y)
    model = _fit_raw(x, y)
    table_x = np.asarray(isotonic.X_thresholds_, dtype=np.float64)
    table_y = np.asarray(isotonic.y_thresholds_, dtype=np.float64)
    calibrated = np.interp(oof, table_x, table_y)
    return (
        ConfidenceModel(
            names=model.names,
            means=model.means,
            scales=model.scales,
            coefficients=model.coefficients,
            intercept=model.intercept,
            table_x=table_x,
            table_y=table_y,
        ),
        calibrated,
    )


def scores(y: FloatArray, p: FloatArray) -> dict[str, float]:
    """AUC, log-loss and Brier score of probabilities ``p`` for labels ``y``."""
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    clipped = np.clip(p, 1e-6, 1 - 1e-6)
    both = len(set(y.tolist())) == 2
    return {
        "auc": float(roc_auc_score(y, p)) if both else math.nan,
        "log_loss": float(log_loss(y, clipped, labels=[0.0, 1.0])),
        "brier": float(brier_score_loss(y, p)),
        "base_rate": float(y.mean()) if len(y) else math.nan,
        "candidates": len(y),
    }


def held_out(records: Sequence[Record], seed: int = 0) -> dict[str, Any]:
    """Fit on three quarters of the files, measure on the rest (and the mean log-probability
    alone, the baseline a classifier has to beat)."""
    from sklearn.model_selection import GroupShuffleSplit

    x, y, groups = _matrix(records)
    split = GroupShuffleSplit(n_splits=1, test_size=HELD_OUT, random_state=seed)
    train, test = next(split.split(x, y, groups))
    model, _ = fit(x[train], y[train], [groups[i] for i in train])
    calibrated = np.asarray([model.probability(row) for row in x[test]])
    raw = _raw(model, x[test])
    lp = x[test][:, FEATURES.index("lp_mean")]
    lp_only = {"auc": scores(y[test], np.nan_to_num(np.exp(lp)))["auc"]}
    return {
        "files": len(set(groups[i] for i in test)),
        "calibrated": scores(y[test], calibrated),
        "raw": scores(y[test], raw),
        "mean_logprob_alone": lp_only,
    }


def with_confidence(records: Sequence[Record], probabilities: FloatArray) -> list[list[Candidate]]:
    """Each record's candidates carrying the given probabilities (in ``_matrix`` order)."""
    out, k = [], 0
    for record in records:
        scored = []
        for c in record.candidates:
            scored.append(
                Candidate(
                    c.features,
                    c.right,
                    c.verdict,
                    c.asks_met,
                    c.attempt,
                    c.mean_logprob,
                    float(probabilities[k]),
                )
            )
            k += 1
        out.append(scored)
    return out


def curve(
    scored: Sequence[Sequence[Candidate]], candidates: int, thresholds: Sequence[float]
) -> list[dict[str, float | None]]:
    """Coverage, right when shown and right over all holes at each threshold."""
    n = max(1, len(scored))
    points: list[dict[str, float | None]] = []
    for threshold in thresholds:
        shown = right = 0
        for record in scored:
            index = replay(record, threshold, candidates)
            if index is not None:
                shown += 1
                right += record[index].right
        points.append(
            {
                "min_confidence": round(threshold, 2),
                "coverage": shown / n,
                "right_when_shown": right / shown if shown else None,
                "right": right / n,
            }
        )
    return points


def operating_point(points: Sequence[dict[str, float | None]], min_coverage: float) -> float:
    """The threshold with the best right-when-shown at coverage >= ``min_coverage`` (the
    lowest such threshold on a tie; 0 when none but 0 keeps the coverage)."""
    best, chosen = -1.0, 0.0
    for point in points:
        coverage, rate = point["coverage"], point["right_when_shown"]
        assert coverage is not None
        if coverage >= min_coverage and rate is not None and rate > best + 1e-12:
            best, chosen = rate, float(point["min_confidence"] or 0.0)
    return chosen


def train(
    records: Sequence[Record], *, candidates: int, min_coverage: float, meta: dict[str, Any]
) -> tuple[ConfidenceModel, dict[str, Any]]:
    """The shipped model (its recommended threshold and what was measured in ``training``)
    and the full report."""
    x, y, groups = _matrix(records)
    if len(set(y.tolist())) < 2 or len(set(groups)) < 2 * FOLDS:
        raise ValueError(
            f"{len(y)} candidates from {len(set(groups))} files, {int(y.sum())} right: too few to "
            f"fit (right and wrong ones from at least {2 * FOLDS} files); record more holes"
        )
    model, oof = fit(x, y, groups)
    held = held_out(records)
    calibrated = held["calibrated"]["log_loss"] <= held["raw"]["log_loss"]
    if not calibrated:
        model = replace(model, table_x=np.zeros(0), table_y=np.zeros(0))
        oof = out_of_fold(x, y, groups)
    scored = with_confidence(records, oof)
    fine = [i / 100 for i in range(100)]
    points = curve(scored, candidates, fine)
    threshold = operating_point(points, min_coverage)
    at = next(p for p in points if p["min_confidence"] == round(threshold, 2))
    tenths = [p for p in points if round(float(p["min_confidence"] or 0) * 10, 6) % 1 == 0]
    report: dict[str, Any] = {
        **meta,
        "holes": len(records),
        "files": len(set(groups)),
        "candidates_recorded": len(y),
        "right_rate": float(y.mean()) if len(y) else None,
        "server_candidates": candidates,
        "held_out_by_file": held,
        "calibration": "isotonic"
        if calibrated
        else "none (isotonic raised the held-out log-loss from "
        f"{held['raw']['log_loss']:.3f} to {held['calibrated']['log_loss']:.3f})",
        "out_of_fold": scores(y, oof),
        "rule": f"best right when shown at coverage >= {min_coverage} (out-of-fold)",
        "recommended": at,
        "curve": tenths,
        "coefficients": dict(zip(FEATURES, (round(c, 4) for c in model.coefficients), strict=True)),
    }
    shipped = ConfidenceModel(
        names=model.names,
        means=model.means,
        scales=model.scales,
        coefficients=model.coefficients,
        intercept=model.intercept,
        table_x=model.table_x,
        table_y=model.table_y,
        recommended=round(threshold, 2),
        meta=_rounded(report),
    )
    return shipped, report


def _rounded(value: Any) -> Any:
    """Floats to four places, for a small and readable weights file."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value
