"""Completion latency of the embedded model: cold prompts vs prefix reuse, 1 vs 2 threads.

Prints a Markdown table (the README carries the latest one). Figures, not
assertions: the machine is shared and noisy, so compare ratios within one run.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from model.runtime.api import CompletionRequest
from model.runtime.default_model import ensure_default_model
from model.runtime.llama_backend import LlamaConfig, LlamaCppBackend


@dataclass
class Sample:
    """One timed generation."""

    seconds: float
    first_piece: float
    prompt_tokens: int
    evaluated: int
    generated: int


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def source_texts() -> list[str]:
    """Real code nobody here wrote: standard-library modules, cut to about 2,500 characters."""
    import argparse as a
    import difflib
    import json.decoder as d
    import shutil
    import textwrap
    import zipfile

    texts = []
    for module in (d, textwrap, difflib, shutil, zipfile, a):
        code = inspect.getsource(module)
        start = code.find("\ndef ")
        texts.append(code[start : start + 2500])
    return texts


def run(backend: LlamaCppBackend, prompt: str, max_tokens: int) -> Sample:
    """Time one greedy generation, noting when its first piece arrived."""
    started = time.monotonic()
    first = None
    stream = backend.complete(CompletionRequest(prompt=(prompt,), max_tokens=max_tokens))
    for _ in stream:
        if first is None:
            first = time.monotonic() - started
    seconds = time.monotonic() - started
    usage = stream.usage
    return Sample(
        seconds=seconds,
        first_piece=first if first is not None else seconds,
        prompt_tokens=usage.prompt_tokens,
        evaluated=usage.prompt_tokens_evaluated,
        generated=usage.completion_tokens,
    )


def measure(threads: int, rounds: int, max_tokens: int) -> dict[str, object]:
    """Cold and prefix-reuse samples for one thread count."""
    backend = LlamaCppBackend(
        LlamaConfig(model_path=ensure_default_model(), n_ctx=4096, n_threads=threads)
    )
    try:
        backend.info()
        texts = source_texts()
        run(backend, "warm-up", 2)
        cold = [run(backend, texts[i % len(texts)], max_tokens) for i in range(rounds)]
        base = texts[0]
        reuse: list[Sample] = []
        run(backend, base + "\n", 1)
        for i in range(rounds):
            # All but the last line equal to the previous prompt: a user typing on.
            reuse.append(run(backend, f"{base}\nvalue_{i} = compute(", max_tokens))
    finally:
        backend.close()
    return {"threads": threads, "cold": cold, "reuse": reuse}


def summarise(label: str, threads: int, samples: list[Sample]) -> dict[str, object]:
    """One table row: latency percentiles, speeds and prompt tokens evaluated."""
    latencies = [s.seconds * 1000 for s in samples]
    decode = [
        (s.generated - 1) / (s.seconds - s.first_piece)
        for s in samples
        if s.generated > 1 and s.seconds > s.first_piece
    ]
    prefill = [s.evaluated / s.first_piece for s in samples if s.first_piece > 0 and s.evaluated]
    return {
        "prompt": label,
        "threads": threads,
        "p50_ms": round(statistics.median(latencies)),
        "p95_ms": round(percentile(latencies, 95)),
        "first_piece_p50_ms": round(statistics.median(s.first_piece * 1000 for s in samples)),
        "prompt_tokens": round(statistics.mean(s.prompt_tokens for s in samples)),
        "evaluated_tokens": round(statistics.mean(s.evaluated for s in samples)),
        "generated_tokens": round(statistics.mean(s.generated for s in samples)),
        "prefill_tok_s": round(statistics.median(prefill)) if prefill else 0,
        "decode_tok_s": round(statistics.median(decode), 1) if decode else 0,
    }


def main(argv: list[str] | None = None) -> int:
    """Run both thread counts and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)

    rows = []
    for threads in args.threads:
        result = measure(threads, args.rounds, args.max_tokens)
        rows.append(summarise("cold", threads, result["cold"]))  # type: ignore[arg-type]
        rows.append(summarise("prefix reuse", threads, result["reuse"]))  # type: ignore[arg-type]
    columns = list(rows[0])
    print("\nbench/latency.py: Gemma 3 270M Q4_K_M, greedy, up to", args.max_tokens, "tokens")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    for threads in args.threads:
        cold = next(r for r in rows if r["threads"] == threads and r["prompt"] == "cold")
        warm = next(r for r in rows if r["threads"] == threads and r["prompt"] != "cold")
        total = float(cold["p50_ms"]) / max(1.0, float(warm["p50_ms"]))  # type: ignore[arg-type]
        first = float(cold["first_piece_p50_ms"]) / max(  # type: ignore[arg-type]
            1.0,
            float(warm["first_piece_p50_ms"]),  # type: ignore[arg-type]
        )
        print(
            f"threads={threads}: with prefix reuse the first piece comes {first:.0f}x sooner "
            f"and the whole {args.max_tokens}-token completion {total:.1f}x sooner (p50)"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
