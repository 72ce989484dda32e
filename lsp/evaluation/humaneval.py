"""HumanEval infilling suites as hole tasks (MIT-licensed data in ``data/``)."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

from model.training.holes import HoleTask

DATA = Path(__file__).parent / "data"
SUITES = {
    "humaneval-single": "HumanEval-SingleLineInfilling.jsonl.gz",
    "humaneval-multi": "HumanEval-MultiLineInfilling.jsonl.gz",
    "humaneval-span": "HumanEval-RandomSpanInfillingLight.jsonl.gz",
}


def load(suite: str, *, limit: int | None = None, seed: int = 0) -> list[HoleTask]:
    """The suite's tasks, shuffled with ``random.Random(seed)``, the first ``limit`` kept."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    with gzip.open(DATA / SUITES[suite], "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    random.Random(seed).shuffle(rows)
    if limit is not None:
        rows = rows[:limit]
    return [_task(suite, row) for row in rows]


def _task(suite: str, row: dict[str, str]) -> HoleTask:
    prompt, middle, suffix = row["prompt"], row["canonical_solution"], row["suffix"]
    return HoleTask(
        task_id=row["task_id"],
        path="solution.py",
        original=prompt + middle + suffix,
        start=len(prompt),
        end=len(prompt) + len(middle),
        kind=suite,
        test=row["test"] + f"\n\ncheck({row['entry_point']})\n",
    )
