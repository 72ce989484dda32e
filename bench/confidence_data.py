"""Calibration data for the show-or-hold classifier, and the fit that ships (``make confidence``).

1. Copies the Python standard library out of the interpreter (as ``make student`` does; no
   evaluation set uses it: HumanEval is its own data, the repository suites are GitPython
   and the user's code) into a git repository under ``--work``.
2. Cuts ``--holes`` holes from it with the evaluation's cutter (``model.training.repo_tasks``:
   one a file, generated code left out; by default the one-line kinds), masks them in a
   copy and indexes that copy (lexical context and symbols, no embeddings), exactly as
   ``apprentice eval --suite repo`` does. Whole-line holes take an editor placement at
   random (empty line, auto-indent, first characters typed); the others the cursor inside
   the line. Half the holes, at random, are completed without repository context (as
   HumanEval is, and a file outside any index).
3. Runs the server's invoked pipeline (its settings, verification, repository context) with
   the embedded model on each hole, trying every one of ``--candidates`` candidates, and
   records each verified candidate's features (``lsp.core.confidence``) and whether
   accepting it gives the hole's lines exactly (``right``). One JSON line a hole in
   ``WORK/records.jsonl``; an interrupted run resumes where it stopped.
4. Fits the classifier (``model.training.confidence_fit``), writes the weights the server
   reads (``lsp/core/data/confidence.json``) and ``WORK/report.json``, and prints the curve
   and the operating point chosen for ``completion.minConfidence``.

    python -m bench.confidence_data --work ~/.cache/apprentice/confidence-work --holes 400
    python -m bench.confidence_data --work ... --fit-only     # refit the recorded holes
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.gpu_student import copy_stdlib
from lsp.core.pipeline import CompletionPipeline, Cursor
from lsp.core.settings import CompletionSettings
from model.training.holes import LINE_PLACEMENTS, HoleTask, Placement, place, placements_for
from model.training.repo_tasks import KINDS

# One-line kinds by default: a block or a body costs twice the time on 2 cores (96 tokens, a
# minute a hole on a busy machine) and is almost never right to the line, while whole-line
# holes on an empty line already bring multi-line candidates (after a colon).
DEFAULT_KINDS = ("assign", "return", "call", "line")
# Generated code holes are not cut from: the encodings package's hundred near-identical
# codec tables were a fifth of the files, and right at twice the rate of the rest.
GENERATED = ("encodings/", "pydoc_data/")

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "lsp" / "core" / "data" / "confidence.json"
MIN_COVERAGE = 0.5
# Seconds a hole's completion may take: on a busy 2-core machine a cold prompt of a long
# file takes tens of seconds, and a deadline would cut candidates that the server, on an
# idle machine, would finish (the labels must not depend on the load).
TIMEOUT_S = 120.0


def placement_for(task: HoleTask, rng: random.Random) -> Placement:
    """An editor placement: one of the three for a whole-line hole, else the cursor."""
    allowed = placements_for(task)
    return rng.choice(LINE_PLACEMENTS) if allowed == LINE_PLACEMENTS else allowed[0]


def record_task(
    pipeline: CompletionPipeline, root: Path, task: HoleTask, placement: Placement
) -> dict[str, Any]:
    """Complete one hole, every candidate tried, and record each verified one."""
    from lsp.evaluation.runner import score_completed
    from model.training.sandbox import SandboxLimits

    view = place(task, placement)
    cursor = Cursor(
        path=task.path,
        language="python",
        text=view.text,
        offset=view.offset,
        repo_name=root.name,
        abs_path=root / task.path,
    )
    result = pipeline.complete(cursor, budget=False)
    limits = SandboxLimits()
    alternatives = []
    for a in result.alternatives:
        scored = score_completed(task, view.apply(a.text, a.replaced), a.text, limits)
        alternatives.append(
            {
                "text": a.text,
                "right": scored.exact,
                "verdict": a.verdict,
                "asks_met": a.asks_met,
                "attempt": a.attempt,
                "mean_logprob": a.mean_logprob,
                "confidence": a.confidence,
                "features": [None if math.isnan(v) else v for v in a.features],
            }
        )
    return {
        "task_id": task.task_id,
        "path": task.path,
        "kind": task.kind,
        "placement": placement,
        "latency_ms": round(result.latency_ms, 1),
        "candidates": result.candidates,
        "alternatives": alternatives,
    }


def collect(
    work: Path,
    holes: int,
    candidates: int,
    seed: int,
    threads: int | None,
    kinds: tuple[str, ...] = KINDS,
) -> float:
    """Record ``holes`` holes into ``work/records.jsonl`` (resuming); the minutes it has
    taken so far, every session counted (``work/collection.json``)."""
    from lsp.evaluation.driver import EvalOptions, eval_settings, parse_model
    from lsp.evaluation.repo import prepare
    from lsp.evaluation.runner import default_variant, pipeline_for
    from model.factory import create_backend

    root = work / "cpython-stdlib"
    if not (root / ".git").exists():
        copy_stdlib(root)
        subprocess.run(["git", "init", "-q", str(root)], check=True, capture_output=True)
    records = work / "records.jsonl"
    done = set()
    if records.exists():
        lines = records.read_text(encoding="utf-8").splitlines()
        done = {json.loads(line)["task_id"] for line in lines if line.strip()}
    started = time.monotonic()
    print(f"cutting {holes} holes and indexing the masked copy of {root}", flush=True)
    from lsp.evaluation.repo import repository_files

    written = [f.path for f in repository_files(root) if not f.path.startswith(GENERATED)]
    suite = prepare(
        root, limit=holes, seed=seed, kinds=kinds, embed=False, per_file=1, only_paths=written
    )
    print(f"indexed in {time.monotonic() - started:.0f} s; {len(done)} holes recorded before")
    spec = parse_model("default", n_threads=threads)
    backend = create_backend(spec.settings)
    try:
        backend.info()
        settings = eval_settings(EvalOptions(timeout_s=TIMEOUT_S))
        variant = default_variant(candidates)
        # Half the holes without repository context, as HumanEval and files outside an
        # index are completed: the feature then varies as it does in use.
        pipelines = {
            with_context: pipeline_for(
                backend, settings, replace(variant, context=with_context), suite.workspace
            )
            for with_context in (True, False)
        }
        for pipeline in pipelines.values():
            pipeline.settings = replace(
                pipeline.settings, choose_among=candidates, min_confidence=0.0
            )
        rng = random.Random(seed)
        with records.open("a", encoding="utf-8") as out:
            for i, task in enumerate(suite.tasks):
                # Drawn for every task, recorded or not: a resumed run draws the same.
                placement = placement_for(task, rng)
                with_context = rng.random() < 0.5
                if task.task_id in done:
                    continue
                pipeline = pipelines[with_context]
                row = record_task(pipeline, suite.workspace.root, task, placement)
                out.write(json.dumps(row) + "\n")
                out.flush()
                rights = sum(a["right"] for a in row["alternatives"])
                print(
                    f"[{i + 1}/{len(suite.tasks)}] {task.task_id} {placement}: "
                    f"{len(row['alternatives'])} verified, {rights} right, "
                    f"{row['latency_ms']:.0f} ms",
                    flush=True,
                )
    finally:
        backend.close()
        suite.close()
        # Minutes over every session of this collection (an interrupted one resumes).
        spent = work / "collection.json"
        before = json.loads(spent.read_text())["minutes"] if spent.exists() else 0.0
        minutes = before + (time.monotonic() - started) / 60
        spent.write_text(json.dumps({"minutes": round(minutes, 1)}) + "\n")
    return minutes


def fit_and_write(
    work: Path, candidates: int, meta: dict[str, Any], weights: Path = WEIGHTS
) -> dict[str, Any]:
    """Fit on the recorded holes; write the weights and the report."""
    from model.training.confidence_fit import load_records, train

    records = load_records(work / "records.jsonl")
    model, report = train(records, candidates=candidates, min_coverage=MIN_COVERAGE, meta=meta)
    weights.write_text(json.dumps(model.as_json(), indent=1) + "\n", encoding="utf-8")
    (work / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report


def markdown(report: dict[str, Any]) -> str:
    """The report's curve and held-out figures as Markdown."""
    held = report["held_out_by_file"]

    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = [
        f"{report['holes']} holes from {report['files']} files, "
        f"{report['candidates_recorded']} verified candidates, right rate "
        f"{rate(report['right_rate'])}",
        f"held out by file ({held['files']} files): AUC {rate(held['calibrated']['auc'])} "
        f"(mean log-probability alone {rate(held['mean_logprob_alone']['auc'])}), log-loss "
        f"{held['calibrated']['log_loss']:.3f} (uncalibrated {held['raw']['log_loss']:.3f}), "
        f"Brier {held['calibrated']['brier']:.3f}; calibration: {report['calibration']}",
        "",
        "| minConfidence | coverage | right when shown | right (all holes) |",
        "|---|---|---|---|",
    ]
    for p in report["curve"]:
        lines.append(
            f"| {p['min_confidence']:.1f} | {p['coverage']:.2f} "
            f"| {rate(p['right_when_shown'])} | {p['right']:.2f} |"
        )
    at = report["recommended"]
    lines.append("")
    lines.append(
        f"chosen: minConfidence {at['min_confidence']:.2f} ({report['rule']}): coverage "
        f"{at['coverage']:.2f}, right when shown {rate(at['right_when_shown'])}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("confidence-work"))
    parser.add_argument("--holes", type=int, default=400)
    parser.add_argument(
        "--candidates", type=int, default=CompletionSettings().candidates, help="tried per hole"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--kinds",
        default=",".join(DEFAULT_KINDS),
        help=f"hole kinds, comma-separated (default {','.join(DEFAULT_KINDS)}; all: "
        f"{','.join(KINDS)})",
    )
    parser.add_argument("--threads", type=int, help="llama.cpp threads (default: the server's)")
    parser.add_argument("--fit-only", action="store_true", help="refit the recorded holes")
    parser.add_argument(
        "--weights", type=Path, default=WEIGHTS, help="where the weights go (default: shipped)"
    )
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.fit_only:
        kinds = tuple(args.kinds.split(","))
        collect(args.work, args.holes, args.candidates, args.seed, args.threads, kinds)
    spent = args.work / "collection.json"
    minutes = json.loads(spent.read_text())["minutes"] if spent.exists() else None
    meta = {
        "data": "CPython standard library (PSF-2.0), holes cut by model.training.repo_tasks",
        "model": "embedded Gemma 3 270M (default)",
        "label": "accepting the candidate gives the hole's lines exactly",
        "command": "make confidence",
        "seed": args.seed,
        "collection_minutes": minutes,
        "date": time.strftime("%Y-%m-%d"),
    }
    report = fit_and_write(args.work, CompletionSettings().candidates, meta, args.weights)
    sys.stdout.write(markdown(report) + "\n")
    sys.stdout.write(f"weights: {args.weights}\nreport: {args.work / 'report.json'}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
