"""Indexing benchmark on real code nobody here wrote: installed packages copied into git repos.

Two repositories: ``click`` (about 12.7k lines: full embedding, retrieval
quality on description queries) and a ~100k-line one (pydantic plus
sentence-transformers: time until lexical and symbol search are ready). Prints
a Markdown table; figures, not assertions.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from indexer.index import IndexSettings, RepositoryIndex

# (query describing what a function does, file, defining symbol's last name part)
QUERIES: list[tuple[str, str, str]] = [
    ("ask the user a yes or no question", "termui.py", "confirm"),
    ("print a message with colors and styles", "termui.py", "secho"),
    ("open an external text editor to edit a string", "termui.py", "edit"),
    ("open a URL or file in the default application", "termui.py", "launch"),
    ("show a progress bar while iterating", "termui.py", "progressbar"),
    ("clear the terminal screen", "termui.py", "clear"),
    ("write the usage line of a command into the help", "formatting.py", "write_usage"),
    ("wrap a paragraph of text to a given width", "formatting.py", "wrap_text"),
    ("wait for the user to press any key", "termui.py", "pause"),
    ("read a single character from the keyboard", "termui.py", "getchar"),
    ("send long output through a pager like less", "termui.py", "echo_via_pager"),
    ("decorator that passes the current context to the callback", "decorators.py", "pass_context"),
    ("add an option that prints the program version and exits", "decorators.py", "version_option"),
    ("directory where an application should store its configuration", "utils.py", "get_app_dir"),
    ("remove ANSI escape sequences from a string", "_compat.py", "strip_ansi"),
    ("remove styling from text", "termui.py", "unstyle"),
    ("ask the user for input with an optional default value", "termui.py", "prompt"),
    ("parameter type restricting a value to a fixed set of choices", "types.py", "Choice"),
    ("parameter type for an integer within a minimum and maximum", "types.py", "IntRange"),
    ("parameter type parsing dates and times with formats", "types.py", "DateTime"),
]


def make_repo(packages: list[str], target: Path) -> int:
    """Copy installed packages' sources into a fresh git repository; returns its line count."""
    target.mkdir(parents=True)
    lines = 0
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"package {name} is not installed")
        source = Path(next(iter(spec.submodule_search_locations)))
        shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        lines += sum(p.read_text(errors="replace").count("\n") for p in source.rglob("*.py"))
    git = ["git", "-C", str(target), "-c", "user.name=bench", "-c", "user.email=b@localhost"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "import"], check=True)
    return lines


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


def hit_rank(index: RepositoryIndex, query: str, path: str, name: str, semantic: bool) -> int:
    """1-based rank of the chunk defining ``name`` in ``path`` (0: not in the top 10)."""
    for rank, hit in enumerate(index.search(query, 10, semantic=semantic), start=1):
        chunk = hit.chunk
        symbol_tail = chunk.symbol.rpartition(".")[2]
        if chunk.path.endswith(path) and name in (symbol_tail, chunk.symbol):
            return rank
    return 0


def quality(index: RepositoryIndex, semantic: bool) -> tuple[float, float, list[float]]:
    """Top-1 and top-3 hit rates over QUERIES, plus per-query latencies in ms."""
    ranks, latencies = [], []
    for query, path, name in QUERIES:
        started = time.perf_counter()
        ranks.append(hit_rank(index, query, path, name, semantic))
        latencies.append((time.perf_counter() - started) * 1000)
    top1 = sum(r == 1 for r in ranks) / len(ranks)
    top3 = sum(1 <= r <= 3 for r in ranks) / len(ranks)
    return top1, top3, latencies


def bench_scale(work: Path, rows: list[tuple[str, str]]) -> None:
    """Time to lexical+symbol readiness on a ~100k-line repository, and one-file re-index."""
    repo = work / "scale"
    lines = make_repo(["pydantic", "sentence_transformers"], repo)
    settings = IndexSettings(location=work / "index")
    started = time.perf_counter()
    with RepositoryIndex(repo, settings) as index:
        report = index.update()
        ready = time.perf_counter() - started
        rows.append(
            (
                f"scale repo ({lines} lines, {report.files} files)",
                f"{report.chunks} chunks, {report.symbols} symbols",
            )
        )
        rows.append(("lexical+symbol index ready (cold)", f"{ready:.2f} s"))
        started = time.perf_counter()
        again = index.update()
        rows.append(
            (
                "re-index, nothing changed",
                f"{time.perf_counter() - started:.2f} s ({again.changed} changed)",
            )
        )
        target = repo / "pydantic" / "fields.py"
        text = target.read_text() + "\n\ndef added_for_benchmark():\n    return 1\n"
        target.write_text(text)
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            index.update_file("pydantic/fields.py", text)
            timings.append((time.perf_counter() - started) * 1000)
        rows.append(
            (
                "one saved file re-indexed (update_file, median of 5)",
                f"{statistics.median(timings):.0f} ms",
            )
        )
        latencies = []
        for query, _, _ in QUERIES * 3:
            started = time.perf_counter()
            index.search(query, 10, semantic=False)
            latencies.append((time.perf_counter() - started) * 1000)
        rows.append(
            (
                "lexical query p50 / p95 (scale repo)",
                f"{statistics.median(latencies):.1f} / {percentile(latencies, 95):.1f} ms",
            )
        )
    started = time.perf_counter()
    with RepositoryIndex(repo, settings) as index:
        rows.append(
            ("reopen existing index (server start)", f"{time.perf_counter() - started:.2f} s")
        )


def bench_click(work: Path, rows: list[tuple[str, str]]) -> None:
    """Full embedding, reuse on re-index, and retrieval quality on click."""
    repo = work / "click"
    lines = make_repo(["click"], repo)
    settings = IndexSettings(location=work / "index")
    with RepositoryIndex(repo, settings) as index:
        report = index.update()
        rows.append(
            (f"click repo ({lines} lines)", f"{report.chunks} chunks, {report.symbols} symbols")
        )
        top1, top3, _ = quality(index, semantic=False)
        rows.append(("lexical only: top-1 / top-3 (20 queries)", f"{top1:.2f} / {top3:.2f}"))
        started = time.perf_counter()
        index.embedder.embed(["warm up"])
        load = time.perf_counter() - started
        started = time.perf_counter()
        embedded, _ = index.embed_pending()
        seconds = time.perf_counter() - started
        rows.append(("embedder load", f"{load:.1f} s ({index.embedder.name})"))
        rows.append(
            (
                "full embedding",
                f"{embedded} chunks in {seconds:.1f} s = {embedded / seconds:.1f} chunks/s",
            )
        )
        top1, top3, latencies = quality(index, semantic=True)
        rows.append(("hybrid (RRF): top-1 / top-3 (20 queries)", f"{top1:.2f} / {top3:.2f}"))
        rows.append(
            (
                "hybrid query p50 / p95",
                f"{statistics.median(latencies):.1f} / {percentile(latencies, 95):.1f} ms",
            )
        )
        target = repo / "click" / "termui.py"
        target.write_text(
            target.read_text().replace("def clear() -> None:", "def clear() -> None:  # edited")
        )
        index.update()
        started = time.perf_counter()
        embedded, _ = index.embed_pending()
        rows.append(
            (
                "re-embed after editing one function",
                f"{embedded} chunk(s) in {time.perf_counter() - started:.2f} s",
            )
        )


def main(argv: list[str] | None = None) -> int:
    """Build both repositories, measure, print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--skip-embedding", action="store_true")
    args = parser.parse_args(argv)
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="apprentice-bench-") as tmp:
        bench_scale(Path(tmp), rows)
        if not args.skip_embedding:
            bench_click(Path(tmp), rows)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append(("peak memory (RSS)", f"{peak:.0f} MiB"))
    print("\nbench/indexing.py")
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    if args.json:
        args.json.write_text(json.dumps(dict(rows), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
