"""Verification against execution: does lint_bridge's verdict predict passing tests?

For each task, several candidates are generated (greedy, then sampled with fixed seeds),
cleaned as the pipeline cleans them, verified, and run against the task's tests in the
sandbox, whatever the verdict. Precision: of the accepted candidates, how many pass;
recall: of the passing candidates, how many were accepted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from lint_bridge.api import Document, Splice
from lsp.core.pipeline import CompletionPipeline, Cursor, PipelineSettings
from lsp.core.text.clean import clean_completion
from lsp.evaluation.runner import Progress, Workspace
from model.runtime.api import CompletionRequest
from model.training.holes import HoleTask, place
from model.training.sandbox import SandboxLimits, run_python


@dataclass
class VerificationStudy:
    """Counts of (verdict, passes) over every candidate."""

    counts: Counter[tuple[str, bool]] = field(default_factory=Counter)
    repaired_pass: int = 0  # repaired candidates whose repaired text passes
    candidates: int = 0

    def add(self, verdict: str, passed: bool) -> None:
        self.counts[(verdict, passed)] += 1
        self.candidates += 1

    @property
    def precision(self) -> float | None:
        accepted = self.counts[("accept", True)] + self.counts[("accept", False)]
        return self.counts[("accept", True)] / accepted if accepted else None

    @property
    def recall(self) -> float | None:
        passing = sum(n for (_, ok), n in self.counts.items() if ok)
        return self.counts[("accept", True)] / passing if passing else None

    def as_json(self) -> dict[str, object]:
        return {
            "candidates": self.candidates,
            "counts": {f"{v}/{'pass' if ok else 'fail'}": n for (v, ok), n in self.counts.items()},
            "repaired_text_passes": self.repaired_pass,
            "precision": self.precision,
            "recall": self.recall,
        }

    def table(self) -> str:
        lines = ["| verdict | candidates | pass the tests | fail |", "|---|---|---|---|"]
        for verdict in ("accept", "repair", "reject"):
            ok, bad = self.counts[(verdict, True)], self.counts[(verdict, False)]
            lines.append(f"| {verdict} | {ok + bad} | {ok} | {bad} |")
        p, r = self.precision, self.recall
        lines.append("")
        lines.append(
            f"precision (accepted that pass) {'-' if p is None else f'{p:.2f}'}, recall "
            f"(passing that were accepted) {'-' if r is None else f'{r:.2f}'}; repaired texts "
            f"that pass: {self.repaired_pass}"
        )
        return "\n".join(lines)


def study(
    pipeline: CompletionPipeline,
    workspace: Workspace,
    tasks: Sequence[HoleTask],
    *,
    samples: int = 4,
    limits: SandboxLimits | None = None,
    progress: Progress | None = None,
) -> VerificationStudy:
    """Verify and execute ``samples`` candidates per task (tasks need tests, and the
    sandbox: ``SandboxUnavailable`` where there is none; the driver leaves the study out)."""
    limits = limits or SandboxLimits()
    verifier = workspace.verifier()
    settings: PipelineSettings = pipeline.settings
    out = VerificationStudy()
    template = pipeline.template()
    for i, task in enumerate(tasks):
        if progress is not None:
            progress("verification", i, len(tasks))
        if task.test is None:
            continue
        view = place(task, "empty")
        cursor = Cursor(
            task.path, "python", view.text, view.offset, abs_path=workspace.root / task.path
        )
        plan = pipeline.plan(cursor)
        built = pipeline.prompt(cursor, (), template)
        seen: set[str] = set()
        max_tokens = settings.max_tokens_multiline if plan.multiline else settings.max_tokens
        for sample in range(samples):
            stream = pipeline.backend.complete(
                CompletionRequest(
                    prompt=built.prompt,
                    max_tokens=max_tokens,
                    stop=plan.stop,
                    stop_tokens=built.stop_tokens,
                    temperature=0.0 if sample == 0 else settings.sample_temperature,
                    seed=None if sample == 0 else sample,
                )
            )
            text = clean_completion("".join(stream), cursor.prefix, cursor.suffix, plan)
            if text is None or text in seen:
                continue
            seen.add(text)
            document = Document(workspace.root / task.path, view.text, "python")
            verdict = verifier.check_sync(document, Splice(view.offset, view.offset, text))
            passed = run_python(view.apply(text) + "\n" + task.test, limits).passed
            out.add(verdict.verdict, passed)
            if verdict.verdict == "repair" and verdict.text is not None:
                repaired = run_python(view.apply(verdict.text) + "\n" + task.test, limits)
                out.repaired_pass += repaired.passed
    if progress is not None:
        progress("verification", len(tasks), len(tasks))
    return out
