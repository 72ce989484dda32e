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
* ``both``;

and, as a mid-generation case, the same greedy tokens after ``MID`` (a function body whose
greedy continuation writes ``shutil.move(...)`` itself) two ways:

* ``mid plain``: ``Llama.generate`` alone;
* ``mid no-op``: plus a processor that returns the logits untouched (what llama-cpp-python
  spends on any processor: it copies the candidates' logits in and out every token);
* ``mid attributes``: plus the attributes processor over the buffer's qualifier table
  (``lsp.core.qualified_names``: os, re, shutil, string), which follows every generated
  token and restricts the attribute after a generated ``qualifier.``
  (``model.runtime.constrain_attributes``).

Prints a Markdown table of milliseconds per generated token (the fastest round, the
prompt's evaluation excluded: on a shared machine the fastest is the least disturbed),
the overhead of each way (the mid-generation ways against ``mid plain``), and, timed on
their own, the milliseconds the log-probability reading adds to a token and each processor
spends per token, and the one-off cost of indexing the vocabulary.
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
from lsp.core.qualified_names import qualified_names
from model.runtime.constrain import NameProcessor, PieceIndex, llama_pieces, name_processor
from model.runtime.constrain_attributes import AttributeProcessor, DotIndex, attribute_processor
from model.runtime.default_model import ensure_default_model
from model.runtime.token_scores import TokenScorer

PROMPT = "import os\n\nos."
MID = "import os\nimport re\nimport shutil\nimport string\n\n\ndef clean(folder):\n    "
WAYS = ("plain", "logprobs", "constrained", "both", "mid plain", "mid no-op", "mid attributes")


class _NoOp:
    """A processor that changes nothing."""

    steps = 0

    def __call__(
        self, input_ids: npt.NDArray[np.intc], logits: npt.NDArray[np.single]
    ) -> npt.NDArray[np.single]:
        return logits


class _Timed:
    """Wraps the processor to add up the time llama.cpp spends calling it."""

    def __init__(self, inner: NameProcessor | AttributeProcessor | _NoOp) -> None:
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
) -> tuple[float, float, list[int]]:
    """Seconds per generated token after the first (the prompt's step excluded), the
    seconds scoring took per token, and the tokens."""
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
    return (time.perf_counter() - started) / count, scoring / len(produced), produced


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
    started = time.perf_counter()
    dots = DotIndex(index.pieces)
    dots_s = time.perf_counter() - started
    verifier = Verifier(CheckSettings(ruff=False))
    legal = legal_names(Cursor("app.py", "python", PROMPT, len(PROMPT)), verifier.resolver)
    assert legal is not None
    known = qualified_names(Cursor("app.py", "python", MID, len(MID)), verifier, "")
    assert known is not None
    tokens = {
        prompt: llm.tokenize(prompt.encode(), add_bos=True, special=False)
        for prompt in (PROMPT, MID)
    }

    def processor(way: str) -> NameProcessor | AttributeProcessor | _NoOp | None:
        if way in ("constrained", "both"):
            return name_processor(index, sorted(legal.names), "", "", len(tokens[PROMPT]))
        if way == "mid no-op":
            return _NoOp()
        if way == "mid attributes":
            return attribute_processor(
                index, dots, known.attributes, known.private, known.line, len(tokens[MID])
            )
        return None

    seconds: dict[str, list[float]] = {way: [] for way in WAYS}
    in_processor: dict[str, list[float]] = {"constrained": [], "mid attributes": []}
    steps = {"constrained": 0, "mid attributes": 0}
    scoring: list[float] = []
    written = ""
    for _ in range(args.rounds):
        for way in WAYS:
            scorer = TokenScorer(llm, llama_cpp) if way in ("logprobs", "both") else None
            made = processor(way)
            timed = None if made is None else _Timed(made)
            prompt = MID if way.startswith("mid") else PROMPT
            per_token, score_s, produced = _run(
                llm, llama_cpp, tokens[prompt], args.tokens, scorer, timed
            )
            seconds[way].append(per_token)
            if scorer is not None:
                scoring.append(score_s)
            if timed is not None and way in in_processor:
                in_processor[way].append(timed.seconds)
                steps[way] = timed.inner.steps
            if way == "mid attributes":
                written = llm.detokenize(produced).decode(errors="replace")
    sizes = sum(len(names) for _, names in known.attributes)
    out = [
        f"Gemma 3 270M (embedded), {args.threads} threads, {args.tokens} greedy tokens after "
        f"{PROMPT!r} ({len(legal.names)} legal names) and after {MID!r} (mid-generation: "
        f"{len(known.attributes)} qualifiers, {sizes} names; it writes {written!r}), fastest "
        f"of {args.rounds} interleaved rounds.\n",
        "| way | ms / token | overhead |",
        "|---|---|---|",
    ]
    for way in WAYS:
        fastest = min(seconds[way])
        base = min(seconds["mid plain" if way.startswith("mid") else "plain"])
        out.append(f"| {way} | {fastest * 1000:.2f} | {(fastest / base - 1) * 100:+.1f}% |")
    plain_ms = min(seconds["plain"]) * 1000
    scoring_ms = statistics.median(scoring) * 1000
    out += [
        "",
        f"Timed on their own (median): reading the log-probability adds {scoring_ms:.3f} ms "
        f"a token ({scoring_ms / plain_ms * 100:.1f}% of the fastest plain token).",
    ]
    for way, label in (("constrained", "first-identifier"), ("mid attributes", "attributes")):
        total_ms = statistics.median(in_processor[way]) * 1000
        per_ms = total_ms / (args.tokens + 1)
        out.append(
            f"The {label} processor adds {per_ms:.3f} ms a token averaged over the generation "
            f"({per_ms / plain_ms * 100:.1f}%): {total_ms:.2f} ms in total, {steps[way]} "
            f"constrained step(s) and {args.tokens + 1 - steps[way]} free ones."
        )
    out.append(
        f"Indexing the vocabulary ({index.size} pieces, once per model load): "
        f"{index_s * 1000:.0f} ms, and its dotted pieces {dots_s * 1000:.0f} ms."
    )
    sys.stdout.write("\n".join(out) + "\n")
    llm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
