"""Fitting the show-or-hold classifier on recorded candidates (synthetic, known answers)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from lsp.core.choose import replay
from lsp.core.confidence import FEATURES, ConfidenceModel
from model.runtime.fake import FakeBackend
from model.training.confidence_fit import (
    Candidate,
    Record,
    curve,
    load_records,
    operating_point,
    train,
)

LP = FEATURES.index("lp_mean")
COMMENT = FEATURES.index("comment")


def synthetic(holes: int = 300, seed: int = 0, step: bool = False) -> list[Record]:
    """Holes of 1-2 candidates whose chance of being right rises with the mean
    log-probability and falls for comments (logistically, or as a step: 0.9 above a
    point, 0.05 below it, which no logistic curve follows); 30 files."""
    rng = random.Random(seed)
    records = []
    for i in range(holes):
        candidates = []
        for attempt in range(rng.choice((1, 2))):
            row = [rng.gauss(0, 1) for _ in FEATURES]
            row[LP] = -abs(rng.gauss(0, 1.2))
            row[COMMENT] = float(rng.random() < 0.2)
            z = 3.0 * row[LP] + 1.0 - 2.0 * row[COMMENT]
            chance = (0.9 if z > 0 else 0.05) if step else 1 / (1 + math.exp(-z))
            right = rng.random() < chance
            candidates.append(Candidate(tuple(row), right, "accept", True, attempt, row[LP]))
        records.append(Record(f"t{i}", f"file{i % 30}.py", tuple(candidates)))
    return records


@pytest.fixture(scope="module")
def trained() -> tuple[ConfidenceModel, dict[str, object]]:
    return train(synthetic(), candidates=2, min_coverage=0.5, meta={"data": "synthetic"})


def test_the_fit_finds_the_signal_and_measures_it_on_held_out_files(
    trained: tuple[ConfidenceModel, dict[str, object]],
) -> None:
    model, report = trained
    assert model.coefficients[LP] > 0 and model.coefficients[COMMENT] < 0
    held = report["held_out_by_file"]
    assert isinstance(held, dict)
    assert held["calibrated"]["auc"] > 0.75
    assert held["files"] == 8  # a quarter of 30 files, rounded up: none shared with training


def test_a_calibration_table_that_does_not_help_on_held_out_files_is_left_out(
    trained: tuple[ConfidenceModel, dict[str, object]],
) -> None:
    # The data are logistic: the regression is calibrated already, and the stepped table
    # only adds noise.
    model, report = trained
    assert model.table_x.size == 0
    assert str(report["calibration"]).startswith("none (isotonic raised the held-out log-loss")


def test_the_calibration_table_is_monotone_within_zero_and_one() -> None:
    records = synthetic(1200, step=True)
    model, report = train(records, candidates=2, min_coverage=0.5, meta={})
    assert report["calibration"] == "isotonic"
    assert model.table_x.size > 1
    assert np.all(np.diff(model.table_x) >= 0) and np.all(np.diff(model.table_y) >= 0)
    assert model.table_y.min() >= 0 and model.table_y.max() <= 1


def test_the_written_weights_read_back_to_the_same_probabilities(
    trained: tuple[ConfidenceModel, dict[str, object]], tmp_path: Path
) -> None:
    model, _ = trained
    path = tmp_path / "confidence.json"
    path.write_text(json.dumps(model.as_json()))
    again = ConfidenceModel.from_json(json.loads(path.read_text()))
    rows = [c.features for r in synthetic(20, seed=1) for c in r.candidates]
    assert [again.probability(r) for r in rows] == [model.probability(r) for r in rows]
    assert again.recommended == model.recommended
    assert again.meta is not None and again.meta["data"] == "synthetic"


def test_the_operating_point_keeps_the_coverage_it_promises(
    trained: tuple[ConfidenceModel, dict[str, object]],
) -> None:
    model, report = trained
    at = report["recommended"]
    assert isinstance(at, dict)
    assert at["coverage"] >= 0.5 and at["min_confidence"] == model.recommended
    assert model.recommended > 0  # holding helps on this data
    points = report["curve"]
    assert isinstance(points, list) and [p["min_confidence"] for p in points][:3] == [0, 0.1, 0.2]
    assert at["right_when_shown"] >= points[0]["right_when_shown"]


def test_the_operating_point_rule() -> None:
    points: list[dict[str, float | None]] = [
        {"min_confidence": 0.0, "coverage": 0.9, "right_when_shown": 0.3},
        {"min_confidence": 0.2, "coverage": 0.6, "right_when_shown": 0.5},
        {"min_confidence": 0.3, "coverage": 0.6, "right_when_shown": 0.5},
        {"min_confidence": 0.4, "coverage": 0.4, "right_when_shown": 0.9},
    ]
    assert operating_point(points, 0.5) == 0.2  # the lowest threshold of the best rate
    assert operating_point(points, 0.95) == 0.0


def test_the_curve_replays_the_candidates_allowed() -> None:
    sure_wrong = Candidate((), False, "accept", True, 0, -0.1, 0.9)
    unsure_right = Candidate((), True, "accept", True, 1, -1.0, 0.2)
    [at_zero, at_half] = curve([[unsure_right, sure_wrong]], 2, [0.0, 0.5])
    assert at_zero["right_when_shown"] == 1.0 and at_half["right_when_shown"] == 0.0


def test_the_replay_never_holds_a_candidate_without_log_probabilities() -> None:
    remote = Candidate((), True, "accept", True, 0, None, 0.1)
    assert replay([remote], 0.9, 2) == 0
    local = Candidate((), True, "accept", True, 0, -0.5, 0.1)
    assert replay([local], 0.9, 2) is None


def test_records_load_from_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    row = {
        "task_id": "a.py:3:line",
        "path": "a.py",
        "alternatives": [
            {
                "features": [None] + [0.0] * (len(FEATURES) - 1),
                "right": True,
                "verdict": "accept",
                "attempt": 0,
                "mean_logprob": None,
            }
        ],
    }
    path.write_text(json.dumps(row) + "\n\n")
    [record] = load_records(path)
    assert record.group == "a.py" and math.isnan(record.candidates[0].features[0])


def test_the_report_prints_the_curve_and_the_choice(
    trained: tuple[ConfidenceModel, dict[str, object]],
) -> None:
    from bench.confidence_data import markdown

    _, report = trained
    text = markdown(report)
    assert "| 0.0 |" in text and "| 0.9 |" in text
    assert f"chosen: minConfidence {report['recommended']['min_confidence']:.2f}" in text  # type: ignore[index]


def test_a_recorded_hole_labels_each_candidate_by_exact_match(tmp_path: Path) -> None:
    """The collector's record: every verified candidate, its features, right or not."""
    from bench.confidence_data import record_task
    from lsp.core.pipeline import CompletionPipeline, PipelineSettings
    from model.runtime.api import TokenLogprobs
    from model.training.holes import HoleTask

    original = "def area(w, h):\n    result = w * h\n    return result\n"
    line = original.index("    result")
    task = HoleTask("a.py:2:line", "a.py", original, line, original.index("    return"), "line")
    answers = iter(["    result = w * h", "    result = w + h"])
    backend = FakeBackend(
        respond=lambda p: next(answers),
        logprobs=lambda p: TokenLogprobs(-0.2, -1.0, -0.3, 5),
    )
    settings = PipelineSettings(candidates=2, choose_among=2)
    row = record_task(CompletionPipeline(backend, settings), tmp_path, task, "empty")
    assert [a["right"] for a in row["alternatives"]] == [True, False]
    assert all(len(a["features"]) == len(FEATURES) for a in row["alternatives"])
    assert row["alternatives"][1]["attempt"] == 1 and row["placement"] == "empty"
    json.dumps(row)  # a JSON line as it is


def test_too_few_holes_are_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match="too few to fit"):
        train(synthetic(8), candidates=2, min_coverage=0.5, meta={})
