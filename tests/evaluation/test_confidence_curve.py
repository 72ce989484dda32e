"""The show-or-hold curve and the choice among candidates, from one recorded run."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from bench.confidence_rescore import rescored
from lsp.core.choose import replay
from lsp.core.pipeline import CompletionPipeline, PipelineSettings
from lsp.core.settings import CompletionSettings
from lsp.evaluation.confidence_curve import (
    ScoredAlternative,
    curve,
    curve_table,
    selection,
    selection_table,
)
from lsp.evaluation.driver import EvalOptions, parse_model, run, variants_for
from model.factory import BackendSettings
from model.runtime.api import TokenLogprobs
from model.runtime.fake import FakeBackend
from tests.test_confidence import LOAD, LOADS, SURE, UNSURE, cursor, lp_only, scripted

MIDDLING = TokenLogprobs(mean=-0.5, minimum=-1.0, first=-0.5, count=6)


def alt(confidence: float, right: bool, attempt: int = 0, **extra: object) -> ScoredAlternative:
    # A local model's candidate: it has log-probabilities (without them it is never held).
    fields: dict[str, object] = {"mean_logprob": -0.5, "verdict": "accept", "asks_met": True}
    fields.update(extra)
    return ScoredAlternative(confidence=confidence, right=right, attempt=attempt, **fields)  # type: ignore[arg-type]


RECORDED = [
    [alt(0.9, True)],  # sure and right
    [alt(0.2, False), alt(0.6, True, attempt=1)],  # unsure wrong, then a better sample
    [alt(0.35, False)],  # unsure and wrong
    [],  # nothing verified
]


def test_the_curve_replays_each_threshold() -> None:
    points = {p.min_confidence: p for p in curve(RECORDED, candidates=2)}
    assert round(CompletionSettings().min_confidence, 2) in points  # the server's default
    assert points[0.0].coverage == 0.75 and points[0.0].right_when_shown == pytest.approx(1 / 3)
    # 0.3: the second task's sample (0.6) is shown instead of its greedy 0.2; the third holds
    # nothing back yet (0.35).
    assert points[0.3].coverage == 0.75 and points[0.3].right_when_shown == pytest.approx(2 / 3)
    assert points[0.4].coverage == 0.5 and points[0.4].right_when_shown == 1.0
    assert points[0.7].coverage == 0.25 and points[0.7].right == 0.25
    # One candidate allowed: the second task's sample is never generated.
    one = {p.min_confidence: p for p in curve(RECORDED, candidates=1)}
    assert one[0.4].coverage == 0.25 and one[0.4].right_when_shown == 1.0
    assert "| r | 0.40 | 4 | 0.50 | 1.00 | 0.50 |" in curve_table([("r", curve(RECORDED, 2))])


def test_the_choice_among_candidates_against_first_come_and_the_oracle() -> None:
    recorded = [
        [alt(0.3, False, mean_logprob=-0.2), alt(0.8, True, 1, mean_logprob=-0.9)],
        [alt(0.9, False, mean_logprob=-0.1), alt(0.1, True, 1, mean_logprob=-1.0)],
        [alt(0.5, True, mean_logprob=-0.5)],
        [alt(0.4, False, verdict="repair", mean_logprob=-0.3)],
    ]
    chosen = selection(recorded, candidates=2)
    assert (chosen.tasks, chosen.with_candidates) == (4, 4)
    assert chosen.first_come == 0.25  # only the third
    assert chosen.by_confidence == 0.5  # the first's sample and the third
    assert chosen.by_mean_logprob == 0.25
    assert chosen.oracle == 0.75
    assert selection(recorded, candidates=1).oracle == 0.25
    assert "| r | 4 | 4 | 0.25 | 0.50 | 0.25 | 0.75 |" in selection_table([("r", chosen)])


def test_a_repair_counts_only_where_nothing_verified() -> None:
    recorded = [alt(0.9, True, verdict="repair"), alt(0.2, False, attempt=1)]
    assert replay(recorded, 0.0, 2) == 1
    assert replay(recorded, 0.5, 2) is None  # the verified one is held; the repair is not used
    assert replay(recorded[:1], 0.5, 2) == 0


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 0.95])
def test_replay_shows_what_the_pipeline_shows_at_that_threshold(threshold: float) -> None:
    """One run trying every candidate predicts the pipeline at any minConfidence."""
    answers, scores = [LOAD, LOADS, "\n        return {}"], [UNSURE, MIDDLING, SURE]

    def made(**settings: object) -> CompletionPipeline:
        chosen = replace(PipelineSettings(candidates=3), **settings)  # type: ignore[arg-type]
        pipeline = CompletionPipeline(scripted(list(answers), list(scores)), chosen)
        pipeline.confidence = lp_only()
        return pipeline

    recorded = made(choose_among=3).complete(cursor()).alternatives
    assert len(recorded) == 3
    index = replay(recorded, threshold, 3)
    shown = made(min_confidence=threshold).complete(cursor(), budget=True).text
    assert shown == (None if index is None else recorded[index].text)


def _greedy_right_sample_sure(settings: BackendSettings) -> FakeBackend:
    """Each HumanEval hole's answer, unsure, from the greedy candidate; a sure answer with a
    comment added (wrong by exact match) from every sampled one."""
    from lsp.evaluation import humaneval

    answers = {t.original[: t.start]: t.answer for t in humaneval.load("humaneval-single")}
    backend = FakeBackend()

    def respond(prompt: str) -> str:
        answer = next((a.rstrip("\n") for b, a in answers.items() if prompt.endswith(b)), "")
        if backend.requests[-1].temperature > 0:
            return answer + "  # sampled"  # verifies, but is not the line
        return answer

    backend.respond = respond
    backend.logprobs = lambda p: SURE if backend.requests[-1].temperature > 0 else UNSURE
    return backend


def test_the_run_records_every_candidate_and_reports_the_curve(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import lsp.core.pipeline
    import lsp.evaluation.runner as runner

    monkeypatch.setattr(runner, "sandbox_available", lambda: False)  # exact match decides
    monkeypatch.setattr(runner, "sandbox_unavailable_reason", lambda: "none here")
    monkeypatch.setattr(lsp.core.pipeline, "shipped", lp_only)
    options = EvalOptions(
        models=[parse_model("fake=default", n_threads=1)],
        limit=3,
        placements=("empty",),
        variants=variants_for(2, ablate=False, without=[]),
        backend_factory=_greedy_right_sample_sure,
        confidence_curve=True,
    )
    result = run(options)
    key = ("fake", "default pipeline", "empty")
    assert [len(r.alternatives) for r in result.results[key]] == [2, 2, 2]
    chosen = result.selections[key]
    assert (chosen.first_come, chosen.by_confidence, chosen.oracle) == (1.0, 0.0, 1.0)
    # The row shows the choice by confidence: the sure sample, never the answer.
    assert result.rows[0].summary.exact == 0.0
    points = {p.min_confidence: p for p in result.curves[key]}
    assert points[0.0].right_when_shown == 1.0  # first-come: the greedy answer
    assert points[0.1].right_when_shown == 0.0  # the unsure answer held for the sure sample
    assert points[0.8].coverage == 0.0
    data = json.loads(json.dumps(result.as_json()))  # as --output writes it
    assert data["confidence_curve"][0]["selection"]["oracle"] == 1.0
    first = data["results"][0]
    assert first["alternatives"][0]["right"] is True and first["confidence"] > 0.5
    # The recorded features re-score the run: the same weights give the same curve, and
    # weights that prefer nothing fall back to the mean log-probability.
    [again] = rescored(data, lp_only()).values()
    assert curve(again, 2) == result.curves[key]
    [flat] = rescored(data, lp_only(weight=0.0)).values()
    assert selection(flat, 2).by_confidence == chosen.by_confidence


def test_the_flag_picks_the_invoked_path_and_the_editor_path_refuses_it() -> None:
    from lsp.cli import build_parser
    from lsp.cli.evaluate import choose_trigger

    parse = build_parser().parse_args
    assert choose_trigger(parse(["eval", "--confidence-curve"])) == "invoked"
    with pytest.raises(ValueError, match="--confidence-curve applies to --trigger invoked"):
        choose_trigger(parse(["eval", "--confidence-curve", "--trigger", "automatic"]))
