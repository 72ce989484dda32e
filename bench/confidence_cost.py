"""What the show-or-hold decision costs per candidate (issue 21's budget: under 1 ms).

Times, with the shipped weights, the three parts of one decision on typical candidates
(one to three lines, with token log-probabilities, two earlier candidates to agree with):
the cursor's scene (once per completion), the features, and the calibrated probability;
then a whole ``Chooser`` round of two candidates as the pipeline runs it. Prints
microseconds per call (median of rounds, each of ``--calls`` calls).

    python -m bench.confidence_cost
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

from lsp.core.choose import Chooser
from lsp.core.confidence import Scene, features, shipped
from lsp.core.pipeline_types import Cursor
from model.runtime.api import TokenLogprobs, Usage

BUFFER = (
    "import os\n\n\ndef newest(folder):\n    names = os.listdir(folder)\n    \n"
    "    return max(paths, key=os.path.getmtime)\n"
)
CURSOR = Cursor("shop/files.py", "python", BUFFER, BUFFER.index("    \n") + 4)
TEXT = "    paths = [os.path.join(folder, name) for name in names]"
LOGPROBS = TokenLogprobs(mean=-0.31, minimum=-2.4, first=-0.8, count=17)
EARLIER = ("paths = [os.path.join(folder, n) for n in names]", "paths = names")


def per_call_us(work: Callable[[], object], calls: int, rounds: int) -> float:
    """Median over ``rounds`` of the microseconds one call of ``work`` takes."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            work()
        times.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    model = shipped()
    scene = Scene.of(CURSOR, ("shop/util.py",), False)

    def candidate() -> tuple[float, ...]:
        return features(
            scene, TEXT, LOGPROBS, repair=False, attempt=1, rejected_before=0, earlier=EARLIER
        )

    row = candidate()

    def decision() -> None:
        chooser = Chooser(model, min_confidence=0.3, choose_among=1, hold=True)
        chooser.scene(scene)
        for raw in EARLIER:
            chooser.begin()
            chooser.generated(raw)
            chooser.add(raw, "accept", Usage(logprobs=LOGPROBS))
            chooser.enough()
        chooser.decide()

    parts = {
        "scene (once a completion)": lambda: Scene.of(CURSOR, ("shop/util.py",), False),
        "features": candidate,
        "probability (numpy, calibrated)": lambda: model.probability(row),
        "a whole decision over two candidates": decision,
    }
    sys.stdout.write("| part | µs a call |\n|---|---|\n")
    for name, work in parts.items():
        sys.stdout.write(f"| {name} | {per_call_us(work, args.calls, args.rounds):.1f} |\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
