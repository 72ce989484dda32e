"""The show-or-hold classifier: its features, its JSON weights, and the decision it drives
in the pipeline (held below ``min_confidence``, the better-scored candidate chosen)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lsp.core.confidence import FEATURES, ConfidenceModel, Scene, features, shipped
from lsp.core.pipeline import CompletionPipeline, Cursor, PipelineSettings
from lsp.core.settings import CompletionSettings, parse_settings
from model.runtime.api import TokenLogprobs
from model.runtime.fake import FakeBackend

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "lsp" / "core" / "data" / "confidence.json"
CODE = "import json\n\n\ndef load_config(path):\n    with open(path) as f:"
LOAD = "\n        return json.load(f)"
LOADS = "\n        return json.loads(f.read())"
SURE = TokenLogprobs(mean=-0.05, minimum=-0.2, first=-0.1, count=6)
UNSURE = TokenLogprobs(mean=-2.0, minimum=-6.0, first=-3.0, count=6)


def lp_only(weight: float = 2.0, intercept: float = 1.0) -> ConfidenceModel:
    """Weights that read the mean log-probability alone: sigmoid(weight * mean + intercept)."""
    n = len(FEATURES)
    coef = [0.0] * n
    coef[FEATURES.index("lp_mean")] = weight
    return ConfidenceModel.from_json(
        {
            "features": list(FEATURES),
            "means": [0.0] * n,
            "scales": [1.0] * n,
            "coef": coef,
            "intercept": intercept,
        }
    )


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def row(**values: float) -> list[float]:
    out = [0.0] * len(FEATURES)
    for name, value in values.items():
        out[FEATURES.index(name)] = value
    return out


# --- the weights ------------------------------------------------------------------------


def test_the_shipped_weights_are_json_naming_the_features_this_code_computes() -> None:
    data = json.loads(WEIGHTS.read_text(encoding="utf-8"))
    assert data["features"] == list(FEATURES)
    model = shipped()
    assert model.names == FEATURES
    assert len(model.coefficients) == len(FEATURES)
    p = model.probability(row(lp_mean=-0.5, lp_min=-2.0, lp_first=-0.5, lp_sum=-3.0))
    assert 0.0 <= p <= 1.0


def test_the_setting_defaults_to_the_operating_point_the_weights_recommend() -> None:
    assert CompletionSettings().min_confidence == shipped().recommended


@pytest.mark.parametrize(
    ("logprobs", "probability", "shown"),
    [
        (TokenLogprobs(mean=-0.05, minimum=-0.3, first=-0.02, count=8), 0.640, True),
        (TokenLogprobs(mean=-0.4, minimum=-2.0, first=-0.3, count=8), 0.145, True),
        (TokenLogprobs(mean=-0.9, minimum=-4.0, first=-1.5, count=8), 0.006, False),
    ],
)
def test_the_shipped_weights_give_the_documented_decisions(
    logprobs: TokenLogprobs, probability: float, shown: bool
) -> None:
    """docs/quality.md ("Right when shown") lists these three candidates: a retrain that
    moves them updates that table and this test together."""
    text = "        return json.load(f)"
    scene = Scene(after_colon=True)  # an empty line in a block, no repository context
    row_ = features(scene, text, logprobs, repair=False, attempt=0, rejected_before=0, earlier=())
    p = shipped().probability(row_)
    assert p == pytest.approx(probability, abs=0.005)
    assert (p >= CompletionSettings().min_confidence) is shown


def test_the_probability_is_the_logistic_of_the_standardised_features() -> None:
    n = len(FEATURES)
    means, scales = np.linspace(-1, 1, n), np.linspace(0.5, 2, n)
    coef = np.linspace(-0.3, 0.4, n)
    model = ConfidenceModel.from_json(
        {
            "features": list(FEATURES),
            "means": means.tolist(),
            "scales": scales.tolist(),
            "coef": coef.tolist(),
            "intercept": -0.25,
        }
    )
    x = np.arange(n, dtype=float) / 3
    expected = sigmoid(float(coef @ ((x - means) / scales)) - 0.25)
    assert model.probability(x.tolist()) == pytest.approx(expected, abs=1e-12)


def test_a_missing_log_probability_reads_as_the_training_mean() -> None:
    model = lp_only()
    assert model.probability(row(lp_mean=math.nan)) == pytest.approx(sigmoid(1.0))


def test_the_calibration_table_maps_the_raw_probability() -> None:
    data = lp_only().as_json()
    data["calibration"] = {"x": [0.0, 0.5, 1.0], "y": [0.0, 0.2, 0.9]}
    model = ConfidenceModel.from_json(data)
    raw = sigmoid(1.0)  # lp_mean 0
    assert model.raw_probability(row()) == pytest.approx(raw)
    assert model.probability(row()) == pytest.approx(0.2 + (raw - 0.5) / 0.5 * 0.7)


@pytest.mark.parametrize(
    "change",
    [
        {"features": list(reversed(FEATURES))},
        {"coef": [0.0]},
        {"scales": [0.0] * len(FEATURES)},
        {"calibration": {"x": [0.5, 0.1], "y": [0.1, 0.5]}},
    ],
)
def test_weights_that_do_not_fit_this_code_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="confidence weights"):
        ConfidenceModel.from_json({**lp_only().as_json(), **change})


def test_the_serving_path_reads_the_weights_with_numpy_alone() -> None:
    """Neither scikit-learn nor scipy is imported to score a candidate."""
    probe = (
        "import sys\n"
        "import lsp.core.pipeline\n"
        "from lsp.core.confidence import FEATURES, shipped\n"
        "shipped().probability([0.0] * len(FEATURES))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --- the features -----------------------------------------------------------------------


def cursor(text: str = CODE, offset: int | None = None) -> Cursor:
    return Cursor("shop/config.py", "python", text, len(text) if offset is None else offset)


def test_the_scene_says_where_the_cursor_is() -> None:
    text = "def f(x):\n    y = x\n    \n    return y\n"
    empty = Scene.of(cursor(text, text.index("    \n") + 4), (), False)
    assert (empty.typed, empty.mid_line, empty.after_colon) == (False, False, False)
    assert empty.next_line == "return y"
    typed = Scene.of(cursor(text, text.index("= x")), ("a.py",), True)
    assert typed.typed and typed.mid_line and typed.context and typed.constrained
    opened = Scene.of(cursor(text, text.index("    y")), (), False)
    assert opened.after_colon and opened.mid_line
    assert opened.next_line == "return y"  # the blank line between is passed over


def test_features_of_a_candidate() -> None:
    scene = Scene(next_line="return y", context=True)
    values = dict(
        zip(
            FEATURES,
            features(
                scene,
                "    y = x + 1\n    return y",
                SURE,
                repair=False,
                attempt=2,
                rejected_before=1,
                earlier=["y = x + 1  ", "# no"],
            ),
            strict=True,
        )
    )
    assert values["lp_mean"] == SURE.mean and values["lp_min"] == SURE.minimum
    assert values["lp_sum"] == pytest.approx(SURE.mean * SURE.count)
    assert values["log_tokens"] == pytest.approx(math.log1p(6))
    assert values["lines"] == 2 and values["sampled"] == 1 and values["rejected_before"] == 1
    assert values["agree"] == 0.5  # one of two earlier candidates began with the same line
    assert values["repeats_below"] == 1 and values["context"] == 1 and values["comment"] == 0


def test_without_log_probabilities_those_features_are_missing() -> None:
    values = features(Scene(), "x = 1", None, repair=True, attempt=0, rejected_before=0, earlier=[])
    assert all(math.isnan(v) for v in values[:5])
    assert values[FEATURES.index("repair")] == 1 and values[FEATURES.index("agree")] == 0


# --- the decision in the pipeline -------------------------------------------------------


def scripted(answers: list[str], scores: list[TokenLogprobs]) -> FakeBackend:
    texts: Iterator[str] = iter(answers)
    sure: Iterator[TokenLogprobs] = iter(scores)
    return FakeBackend(respond=lambda p: next(texts), logprobs=lambda p: next(sure))


def pipeline(backend: FakeBackend, **settings: object) -> CompletionPipeline:
    chosen = replace(PipelineSettings(candidates=1), **settings)  # type: ignore[arg-type]
    made = CompletionPipeline(backend, chosen)
    made.confidence = lp_only()
    return made


def test_an_unsure_candidate_is_held_at_half_and_shown_at_zero() -> None:
    held = pipeline(scripted([LOAD], [UNSURE]), min_confidence=0.5).complete(cursor())
    assert held.text is None and held.verdict == "unsure"
    assert held.confidence == pytest.approx(sigmoid(2 * UNSURE.mean + 1))
    assert held.logprobs is None  # nothing shown
    shown = pipeline(scripted([LOAD], [UNSURE]), min_confidence=0.0).complete(cursor())
    assert shown.text == LOAD and shown.confidence == held.confidence


def test_a_candidate_without_log_probabilities_is_never_held() -> None:
    # A remote server reports none: the estimate would be the calibration data's base rate
    # read off the other features, so the threshold does not apply to it.
    backend = FakeBackend(respond=lambda p: LOAD)
    result = pipeline(backend, candidates=2, min_confidence=0.99).complete(cursor())
    assert result.text == LOAD and result.logprobs is None
    assert result.confidence is not None and result.confidence < 0.99
    assert len(backend.requests) == 1  # and it ends the search like a confident one


def test_without_log_probabilities_the_earliest_candidate_is_chosen() -> None:
    # The score would read length and placement alone: no evidence to reorder by.
    texts = iter([LOADS, LOAD])
    backend = FakeBackend(respond=lambda p: next(texts))
    made = pipeline(backend, candidates=2, choose_among=2)
    made.confidence = shipped()
    assert made.complete(cursor()).text == LOADS


def test_a_sure_candidate_is_shown_at_half() -> None:
    result = pipeline(scripted([LOAD], [SURE]), min_confidence=0.5).complete(cursor())
    assert result.text == LOAD and result.confidence == pytest.approx(sigmoid(0.9))


def test_an_explicit_request_shows_its_candidate_whatever_its_confidence() -> None:
    made = pipeline(scripted([LOAD], [UNSURE]), min_confidence=0.5)
    assert made.complete(cursor(), budget=False).text == LOAD


def test_an_unsure_first_candidate_makes_way_for_a_sure_one() -> None:
    backend = scripted([LOAD, LOADS, LOAD], [UNSURE, SURE, SURE])
    result = pipeline(backend, candidates=3, min_confidence=0.5).complete(cursor())
    assert result.text == LOADS
    assert len(backend.requests) == 2  # the second was sure enough: no third
    assert [a.text for a in result.alternatives] == [LOAD, LOADS]


def test_a_sure_first_candidate_ends_the_search() -> None:
    backend = scripted([LOAD, LOADS], [SURE, SURE])
    result = pipeline(backend, candidates=2, min_confidence=0.5).complete(cursor())
    assert result.text == LOAD and len(backend.requests) == 1


def test_the_higher_scored_candidate_is_chosen_not_the_first() -> None:
    backend = scripted([LOAD, LOADS], [UNSURE, SURE])
    result = pipeline(backend, candidates=2, choose_among=2).complete(cursor())
    assert result.text == LOADS and result.verdict == "unchecked"
    assert result.logprobs == SURE  # the shown candidate's own
    first_come = pipeline(scripted([LOAD, LOADS], [UNSURE, SURE]), candidates=2)
    assert first_come.complete(cursor()).text == LOAD


def test_equal_scores_go_to_the_higher_mean_log_probability_then_the_first() -> None:
    flat = lp_only(weight=0.0)  # every candidate 0.73
    backend = scripted([LOAD, LOADS], [UNSURE, SURE])
    made = pipeline(backend, candidates=2, choose_among=2)
    made.confidence = flat
    assert made.complete(cursor()).text == LOADS
    same = pipeline(scripted([LOAD, LOADS], [SURE, SURE]), candidates=2, choose_among=2)
    same.confidence = flat
    assert same.complete(cursor()).text == LOAD


def test_alternatives_are_what_the_editor_would_get_with_their_scores() -> None:
    text = "def f(x):\n    y = x\n        \n"
    at = text.index("        \n") + 8  # after an auto-indent one level too deep
    backend = scripted(["    return y", "    return x"], [SURE, UNSURE])
    result = pipeline(backend, candidates=2, choose_among=2).complete(cursor(text, at))
    assert (result.text, result.replaced) == ("    return y", 8)  # a dedent over the indent
    [first, second] = result.alternatives
    assert (first.text, first.replaced, first.verdict) == ("    return y", 8, "unchecked")
    assert second.confidence < first.confidence and second.mean_logprob == UNSURE.mean
    assert len(first.features) == len(FEATURES)
    assert result.as_json()["confidence"] == pytest.approx(first.confidence, abs=1e-4)


# --- the setting ------------------------------------------------------------------------


def test_min_confidence_reaches_the_pipeline() -> None:
    from lsp.core.factory import pipeline_settings

    settings, problems = parse_settings({"completion": {"minConfidence": 0.4}})
    assert problems == [] and pipeline_settings(settings).min_confidence == 0.4
    whole, _ = parse_settings({"completion": {"minConfidence": 1}})
    assert whole.completion.min_confidence == 1.0


@pytest.mark.parametrize("value", [1.5, -0.1, "0.5", True, None])
def test_a_bad_min_confidence_is_reported_once_and_keeps_the_default(value: object) -> None:
    settings, problems = parse_settings({"completion": {"minConfidence": value}})
    assert settings.completion.min_confidence == CompletionSettings().min_confidence
    assert len(problems) == 1 and problems[0].startswith("completion.minConfidence")


def test_a_candidate_that_repeats_a_verified_one_counts_and_agrees(tmp_path: Path) -> None:
    """Verified once, the same text from a later candidate is considered again (not
    skipped as already checked), with its agreement feature set."""
    from lint_bridge.verify import Verifier

    source = tmp_path / "config.py"
    source.write_text(CODE)
    chosen = PipelineSettings(candidates=3, choose_among=3)
    made = CompletionPipeline(
        scripted([LOAD, LOAD, LOADS], [UNSURE, SURE, SURE]),
        chosen,
        verifier=Verifier(workspace_root=tmp_path),
    )
    made.confidence = lp_only()
    at = Cursor("config.py", "python", CODE, len(CODE), abs_path=source)
    result = made.complete(at)
    assert [a.text for a in result.alternatives] == [LOAD, LOAD, LOADS]
    agree = FEATURES.index("agree")
    assert [a.features[agree] for a in result.alternatives] == [0.0, 1.0, 0.0]
    assert result.verdict == "accept"
