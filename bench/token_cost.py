"""What token log-probabilities and constrained names cost per generated token (issue 21).

Loads the embedded Gemma in this process, as the worker does (n_ctx 2048, fixed threads),
and generates the same greedy tokens after ``import os\\n\\nos.`` four ways, interleaved
round by round so a busy machine slows every way alike:

* ``plain``: ``Llama.generate`` alone (the worker before issue 21);
* ``logprobs``: plus each token's log-probability read from llama.cpp's last logits row
  (``model.runtime.token_scores``), as the worker now always does;
* ``constrained``: plus the names processor over the ``os`` module's legal names
  (``model.runtime.constrain``), which restricts the first identifier and then passes
  logits through;
* ``both``.

Prints a Markdown table of milliseconds per generated token (the fastest round, the
prompt's evaluation excluded: on a shared machine the fastest is the least disturbed),
the overhead of each way, and, timed on their own, the milliseconds the log-probability
reading adds to a token and the processor spends in its constrained steps, and the one-off
cost of indexing the vocabulary.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from lint_bridge.api import CheckSettings
from lint_bridge.verify import Verifier
from lsp.core.legal_names import legal_names
from lsp.core.pipeline_types import Cursor
from model.runtime.constrain import NameProcessor, PieceIndex, llama_pieces, name_processor
from model.runtime.default_model import ensure_default_model
from model.runtime.token_scores import TokenScorer

PROMPT = "import os\n\nos."
WAYS = ("plain", "logprobs", "constrained", "both")


class _Timed:
    """Wraps the processor to add up the time llama.cpp spends calling it."""

    def __init__(self, inner: NameProcessor) -> None:
        self.inner = inner
        self.seconds = 0.0

    def __call__(
        self, input_ids: npt.NDArray[np.intc], logits: npt.NDArray[np.single]
    ) -> npt.NDArray[np.single]:
        started = time.perf_counter()
        try:
            return self.inner(input_ids, logits)
        finally:
            self.seconds += time.perf_counter() - started


def _run(
    llm: Any,
    llama_cpp: Any,
    tokens: list[int],
    count: int,
    scorer: TokenScorer | None,
    processor: Callable[..., Any] | None,
) -> tuple[float, float]:
    """Seconds per generated token after the first (the prompt's step excluded), and the
    seconds scoring took per token."""
    extra: dict[str, Any] = {}
    if processor is not None:
        extra["logits_processor"] = llama_cpp.LogitsProcessorList([processor])
    generator = llm.generate(tokens, temp=0.0, top_k=40, top_p=0.95, min_p=0.05, **extra)
    produced: list[int] = []
    started = 0.0
    scoring = 0.0
    for token in generator:
        if scorer is not None:
            before = time.perf_counter()
            scorer.score(token)
            scoring += time.perf_counter() - before
        produced.append(token)
        if len(produced) == 1:
            started = time.perf_counter()
        if len(produced) > count:
            break
    generator.close()
    return (time.perf_counter() - started) / count, scoring / len(produced)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=32, help="tokens generated per run")
    parser.add_argument("--rounds", type=int, default=7, help="runs of each way")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(ensure_default_model()),
        n_ctx=2048,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    started = time.perf_counter()
    index = PieceIndex(llama_pieces(llm, llama_cpp))
    index_s = time.perf_counter() - started
    legal = legal_names(
        Cursor("app.py", "python", PROMPT, len(PROMPT)),
        Verifier(CheckSettings(ruff=False)).resolver,
    )
    assert legal is not None
    tokens = llm.tokenize(PROMPT.encode(), add_bos=True, special=False)
    seconds: dict[str, list[float]] = {way: [] for way in WAYS}
    in_processor: list[float] = []
    scoring: list[float] = []
    steps = 0
    for _ in range(args.rounds):
        for way in WAYS:
            scorer = TokenScorer(llm, llama_cpp) if way in ("logprobs", "both") else None
            timed = None
            if way in ("constrained", "both"):
                inner = name_processor(index, sorted(legal.names), "", "", len(tokens))
                assert inner is not None
                timed = _Timed(inner)
            per_token, score_s = _run(llm, llama_cpp, tokens, args.tokens, scorer, timed)
            seconds[way].append(per_token)
            if scorer is not None:
                scoring.append(score_s)
            if timed is not None:
                in_processor.append(timed.seconds)
                steps = timed.inner.steps
    plain = min(seconds["plain"])
    out = [
        f"Gemma 3 270M (embedded), {args.threads} threads, {args.tokens} greedy tokens after "
        f"{PROMPT!r}, fastest of {args.rounds} interleaved rounds; {len(legal.names)} legal "
        "names.\n",
        "| way | ms / token | overhead |",
        "|---|---|---|",
    ]
    for way in WAYS:
        fastest = min(seconds[way])
        out.append(f"| {way} | {fastest * 1000:.2f} | {(fastest / plain - 1) * 100:+.1f}% |")
    processor_ms = statistics.median(in_processor) * 1000
    scoring_ms = statistics.median(scoring) * 1000
    constrained_ms = processor_ms / (args.tokens + 1)
    out += [
        "",
        f"Timed on their own (median): reading the log-probability adds {scoring_ms:.3f} ms "
        f"a token ({scoring_ms / (plain * 1000) * 100:.1f}% of the fastest plain token); the "
        f"processor adds {constrained_ms:.3f} ms a token averaged over the generation "
        f"({constrained_ms / (plain * 1000) * 100:.1f}%).",
        f"Processor: {processor_ms:.2f} ms per generation in total over {steps} constrained "
        f"step(s) ({processor_ms / max(1, steps):.2f} ms a step) and "
        f"{args.tokens + 1 - steps} free ones.",
        f"Indexing the vocabulary ({index.size} pieces, once per model load): "
        f"{index_s * 1000:.0f} ms.",
    ]
    sys.stdout.write("\n".join(out) + "\n")
    llm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
