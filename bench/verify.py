"""Verification latency of lint_bridge on Python files of 100, 1,000 and 5,000 lines.

The files are built from this repository's own modules (real code); candidates
are good and bad insertions at the end of a function body. Each size gets a new
document (the first check pays for linting the unchanged buffer, later ones hit
the cache, as in the editor); no candidate text repeats, so every check runs
ruff and the parsers on a new buffer. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lint_bridge.api import Document, Splice
from lint_bridge.verify import Verifier

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [
    "lsp/cli/__init__.py",
    "indexer/index.py",
    "model/runtime/llama_backend.py",
    "lint_bridge/verify.py",
]
# {n} makes every round's text new, so no check is answered from a cache.
CANDIDATES = [
    "\n    result{n} = os.path.join(base, name)",
    "\n    result{n} = os.path.joinpath(base, name)",
    "\n    data{n} = json.loads(text)",
    "\n    data{n} = json.loads_file(text)",
    "\n    value{n} = helper_that_does_not_exist(1)",
    "\n    values{n} = [item * 2 for item in range(10)]",
    "\n    if (base{n}:\n        return 1",
    "\n    return len(name) + {n}",
]
HEADER = "import json\nimport os\n\n\n"
TAIL = "\n\ndef probe(base, name, text):\n    total = 0"


def build_file(lines: int) -> str:
    """Real module text repeated up to ``lines`` lines, then a function to complete in."""
    body: list[str] = []
    sources = [(ROOT / path).read_text().split("\n") for path in SOURCES]
    while len(body) < lines - 10:
        for source in sources:
            body.extend(source)
    text = HEADER + "\n".join(body[: lines - 10]) + TAIL
    return text


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


async def measure(size: int, rounds: int, workspace: Path) -> dict[str, object]:
    """Check every candidate ``rounds`` times against a ``size``-line file."""
    text = build_file(size)
    path = workspace / f"bench_{size}.py"
    path.write_text(text)
    verifier = Verifier(workspace_root=ROOT)
    document = Document(path=path, text=text, language="python", version=1)
    first = time.perf_counter()
    await verifier.check(document, Splice(len(text), len(text), CANDIDATES[0].format(n="")))
    first_ms = (time.perf_counter() - first) * 1000
    timings: list[float] = []
    verdicts: dict[str, int] = {}
    for round_number in range(rounds):
        for template in CANDIDATES:
            candidate = template.format(n=round_number)
            started = time.perf_counter()
            verdict = await verifier.check(document, Splice(len(text), len(text), candidate))
            timings.append((time.perf_counter() - started) * 1000)
            verdicts[verdict.verdict] = verdicts.get(verdict.verdict, 0) + 1
    return {
        "lines": text.count("\n") + 1,
        "checks": len(timings),
        "first_ms": round(first_ms, 1),
        "p50_ms": round(statistics.median(timings), 1),
        "p95_ms": round(percentile(timings, 95), 1),
        "verdicts": verdicts,
    }


def main(argv: list[str] | None = None) -> int:
    """Measure the three sizes and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="apprentice-verify-") as tmp:
        for size in (100, 1000, 5000):
            rows.append(asyncio.run(measure(size, args.rounds, Path(tmp))))
    print("\nbench/verify.py: verification latency per candidate (syntax + symbols + ruff)")
    print("| lines | checks | first check ms | p50 ms | p95 ms | verdicts |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(row["verdicts"].items()))  # type: ignore[attr-defined]
        print(
            f"| {row['lines']} | {row['checks']} | {row['first_ms']} | {row['p50_ms']} "
            f"| {row['p95_ms']} | {verdicts} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
