"""Re-score a recorded ``apprentice eval --confidence-curve`` run with other weights.

The run's JSON (``--output``) keeps every verified candidate's features and whether it was
right, so the show-or-hold curve and the choice among candidates of new weights (after
``make confidence``) need no second run of the model:

    apprentice eval --trigger invoked --confidence-curve --candidates 3 --output run.json
    python -m bench.confidence_rescore run.json --candidates 3 [--weights other.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

from lsp.core.confidence import ConfidenceModel, shipped
from lsp.core.settings import CompletionSettings
from lsp.evaluation.confidence_curve import (
    ScoredAlternative,
    curve,
    curve_table,
    selection,
    selection_table,
)


def rescored(
    data: dict[str, object], model: ConfidenceModel
) -> dict[str, list[list[ScoredAlternative]]]:
    """Per row label, each task's alternatives with the new model's confidence."""
    rows: dict[str, list[list[ScoredAlternative]]] = {}
    results = data["results"]
    assert isinstance(results, list)
    for task in results:
        label = " · ".join((task["model"], task["variant"], task["placement"]))
        alternatives = []
        for a in task["alternatives"]:
            row = tuple(math.nan if v is None else float(v) for v in a["features"])
            recorded = ScoredAlternative(
                confidence=0.0,
                mean_logprob=a["mean_logprob"],
                verdict=a["verdict"],
                asks_met=a["asks_met"],
                attempt=a["attempt"],
                right=a["right"],
                features=row,
            )
            alternatives.append(replace(recorded, confidence=model.probability(row)))
        rows.setdefault(label, []).append(alternatives)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the JSON of an eval --confidence-curve run")
    parser.add_argument("--weights", type=Path, help="weights JSON (default: the shipped ones)")
    parser.add_argument(
        "--candidates", type=int, default=CompletionSettings().candidates, help="tries replayed"
    )
    args = parser.parse_args(argv)
    model = shipped()
    if args.weights is not None:
        model = ConfidenceModel.from_json(json.loads(args.weights.read_text(encoding="utf-8")))
    rows = rescored(json.loads(args.run.read_text(encoding="utf-8")), model)
    curves = [(label, curve(tasks, args.candidates)) for label, tasks in rows.items()]
    chosen = [(label, selection(tasks, args.candidates)) for label, tasks in rows.items()]
    sys.stdout.write(curve_table(curves) + "\n\n" + selection_table(chosen) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
