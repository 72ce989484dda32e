"""Embedding speed and retrieval quality of each embedder configuration, over stdlib functions.

Embeds ~300 function-sized chunks of the standard library (split naively at
top-level ``def``) with every configuration and prints a Markdown table:
chunks/s, load time, and retrieval quality on 20 hand-written descriptions
(top-1/top-3 hit of the right function) and on ~200 automatic "docstring ->
code without its docstring" queries. Figures, not assertions: the machine is
shared and noisy, so compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.embed import Embedder, OnnxRecipe, ensure_onnx_model, load_onnx_embedder
from indexer.embed_torch import TorchEmbedder

MODULES = (
    "shutil",
    "textwrap",
    "base64",
    "urllib/parse",
    "glob",
    "fnmatch",
    "calendar",
    "email/utils",
    "posixpath",
    "difflib",
    "gzip",
    "tempfile",
    "heapq",
    "statistics",
    "colorsys",
    "copy",
    "bisect",
    "json/__init__",
    "quopri",
    "tarfile",
)

# (description, module, function): each names exactly one chunk of the corpus.
QUERIES = [
    ("copy a directory tree recursively", "shutil", "copytree"),
    ("find the full path of an executable program on PATH", "shutil", "which"),
    ("wrap a paragraph into a list of lines no longer than a width", "textwrap", "wrap"),
    ("remove common leading whitespace from every line", "textwrap", "dedent"),
    ("encode bytes with the URL-safe base64 alphabet", "base64", "urlsafe_b64encode"),
    ("split a URL into scheme, netloc, path, query and fragment", "urllib/parse", "urlsplit"),
    ("parse a query string into a dictionary of lists", "urllib/parse", "parse_qs"),
    ("percent-encode special characters in a URL path", "urllib/parse", "quote"),
    ("test whether a filename matches a shell wildcard pattern", "fnmatch", "fnmatch"),
    ("check whether a year is a leap year", "calendar", "isleap"),
    ("parse an email date header into a datetime", "email/utils", "parsedate_to_datetime"),
    ("make a path absolute, resolving symbolic links", "posixpath", "realpath"),
    ("replace a leading ~ with the user's home directory", "posixpath", "expanduser"),
    ("find the words in a list that closely match a given word", "difflib", "get_close_matches"),
    ("unified diff between two lists of lines", "difflib", "unified_diff"),
    ("compress bytes with gzip in memory", "gzip", "compress"),
    ("create a temporary directory and return its name", "tempfile", "mkdtemp"),
    ("merge several sorted inputs into one sorted iterator", "heapq", "merge"),
    ("middle value of a list of numbers", "statistics", "median"),
    ("convert an RGB colour to hue, saturation and value", "colorsys", "rgb_to_hsv"),
]

_SEQ = re.compile(r"seq(\d+)")
_DOCSTRING = re.compile(r"(\"\"\"|''')(.*?)\1", re.S)


@dataclass(frozen=True)
class Corpus:
    """The chunks, their (module, function) keys, and the docstring -> code pairs."""

    texts: list[str]
    keys: list[tuple[str, str]]
    stripped: list[str]  # each chunk without its docstring
    doc_queries: list[tuple[str, int]]  # (first paragraph of a docstring, chunk index)


def load_corpus(limit: int = 300, max_lines: int = 60) -> Corpus:
    """Function-sized pieces of the standard library, split naively at top-level ``def``."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    texts: list[str] = []
    keys: list[tuple[str, str]] = []
    for module in MODULES:
        source = (lib / f"{module}.py").read_text(encoding="utf-8")
        for piece in source.split("\ndef ")[1:]:
            lines = ("def " + piece).splitlines()
            if len(lines) >= 4:
                texts.append("\n".join(lines[:max_lines]))
                keys.append((module, piece.split("(", 1)[0]))
    texts, keys = texts[:limit], keys[:limit]
    stripped, doc_queries = [], []
    for index, text in enumerate(texts):
        match = _DOCSTRING.search(text)
        stripped.append(_DOCSTRING.sub("", text, count=1) if match else text)
        if match and match.start() < 300:
            first = " ".join(match.group(2).strip().split("\n\n")[0].split())
            if len(first.split()) >= 4:
                doc_queries.append((first, index))
    for _, module, name in QUERIES:
        assert keys.count((module, name)) == 1, (module, name)
    return Corpus(texts, keys, stripped, doc_queries)


@dataclass
class Config:
    """One configuration to measure."""

    label: str
    make: Callable[[], Embedder]
    unsorted: bool = False  # feed one batch per call in corpus order (no length sorting)
    batch_size: int = 8
    prepare: Callable[[str], str] | None = None  # rewrites chunk texts (not queries) first


_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*|\d+")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def words_only(text: str) -> str:
    """Code as words: identifiers split on ``_`` and camelCase, punctuation dropped.

    A candidate "smart truncation": more identifiers fit in 128 tokens.
    """
    return " ".join(_CAMEL_BOUNDARY.sub(" ", word) for word in _WORD.findall(text))


def ranks(queries: np.ndarray, docs: np.ndarray, targets: list[int]) -> np.ndarray:
    """0-based rank of each query's target document by cosine."""
    scores = queries @ docs.T
    target_scores = scores[np.arange(len(targets)), targets]
    return (scores > target_scores[:, None]).sum(axis=1)


def embed_all(embedder: Embedder, texts: list[str], config: Config) -> np.ndarray:
    """All vectors; unsorted configs call embed once per batch, in corpus order."""
    if not config.unsorted:
        return embedder.embed(texts)
    step = config.batch_size  # embed() sorts within a call, so one call per batch
    return np.vstack([embedder.embed(texts[i : i + step]) for i in range(0, len(texts), step)])


@dataclass
class Loaded:
    """A configuration with its embedder, its prepared texts and its timings."""

    config: Config
    embedder: Embedder
    load_s: float
    texts: list[str]
    seconds: list[float]


def load(config: Config, corpus: Corpus) -> Loaded:
    """Create the embedder (timed) and warm it up."""
    started = time.perf_counter()
    embedder = config.make()
    load_s = time.perf_counter() - started
    prepare = config.prepare or (lambda text: text)
    texts = [prepare(text) for text in corpus.texts]
    embedder.embed(texts[:8])  # first-run allocations
    return Loaded(config, embedder, load_s, texts, [])


def score(loaded: Loaded, corpus: Corpus) -> tuple[dict[str, object], np.ndarray]:
    """Quality on both query sets; returns the table row and the chunk vectors."""
    embedder, config = loaded.embedder, loaded.config
    prepare = config.prepare or (lambda text: text)
    vectors = embed_all(embedder, loaded.texts, config)
    hand = ranks(
        np.vstack([embedder.embed_query(q) for q, _, _ in QUERIES]),
        vectors,
        [corpus.keys.index((m, n)) for _, m, n in QUERIES],
    )
    auto = ranks(
        embedder.embed([q for q, _ in corpus.doc_queries]),
        embedder.embed([prepare(text) for text in corpus.stripped]),
        [i for _, i in corpus.doc_queries],
    )
    row: dict[str, object] = {
        "config": config.label,
        "name": embedder.name,
        "chunks/s": round(len(corpus.texts) / min(loaded.seconds), 1),
        "load s": round(loaded.load_s, 2),
        "top-1": round(float((hand == 0).mean()), 2),
        "top-3": round(float((hand < 3).mean()), 2),
        "doc→code top-1": round(float((auto == 0).mean()), 3),
        "doc→code MRR": round(float((1.0 / (auto + 1)).mean()), 3),
    }
    return row, vectors


def cold_start(kind: str, cache: Path) -> float:
    """Seconds for a fresh process to import, load and embed one text."""
    code = (
        "import time; t = time.perf_counter()\n"
        "from indexer.embed import create_embedder\n"
        f"create_embedder({kind!r}).embed(['x'])\n"
        "print(time.perf_counter() - t)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_CACHE_HOME": str(cache)},
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def configs(cache: Path, quick: bool) -> list[Config]:
    """Every configuration, cheapest knobs last; ``quick`` keeps one of each backend."""

    def onnx(seq: int, threads: int, batch: int, recipe: OnnxRecipe | None = None) -> Embedder:
        return load_onnx_embedder(
            threads=threads, recipe=recipe, max_seq_length=seq, batch_size=batch, cache_dir=cache
        )

    def torch(seq: int, threads: int) -> Embedder:
        return TorchEmbedder(max_seq_length=seq, threads=threads, batch_size=32)

    fp32 = OnnxRecipe(quantize=False)
    fused = OnnxRecipe(fuse=True)
    full = [
        Config("torch seq256 1t b32", lambda: torch(256, 1)),
        Config("torch seq128 1t b32", lambda: torch(128, 1)),
        Config("torch seq128 2t b32", lambda: torch(128, 2)),
        Config("onnx fp32 seq128 1t b8", lambda: onnx(128, 1, 8, fp32)),
        Config("onnx int8 fused seq128 1t b8", lambda: onnx(128, 1, 8, fused)),
        Config("onnx int8 fused seq128 2t b8", lambda: onnx(128, 2, 8, fused)),
        Config("onnx int8 seq256 1t b8", lambda: onnx(256, 1, 8)),
        Config("**onnx int8 seq128 1t b8** (default)", lambda: onnx(128, 1, 8)),
        Config("onnx int8 seq128 1t b16", lambda: onnx(128, 1, 16)),
        Config("onnx int8 seq128 1t b32", lambda: onnx(128, 1, 32)),
        Config("onnx int8 seq128 1t b64", lambda: onnx(128, 1, 64)),
        Config("onnx int8 seq128 1t b8, unsorted", lambda: onnx(128, 1, 8), unsorted=True),
        Config("onnx int8 seq128 2t b8", lambda: onnx(128, 2, 8)),
        Config("onnx int8 seq96 1t b8", lambda: onnx(96, 1, 8)),
        Config("onnx int8 seq64 1t b8", lambda: onnx(64, 1, 8)),
        Config("onnx int8 seq128 1t b8, words only", lambda: onnx(128, 1, 8), prepare=words_only),
    ]
    if quick:
        return [full[1], full[7]]
    return full


def main(argv: list[str] | None = None) -> int:
    """Export the ONNX variants, measure every configuration and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one torch and one ONNX config")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes; the best counts")
    parser.add_argument(
        "--cache-dir", type=Path, help="cache root for the ONNX exports (default: a temp dir)"
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)

    corpus = load_corpus()
    with tempfile.TemporaryDirectory(prefix="apprentice-bench-") as tmp:
        cache = args.cache_dir or Path(tmp)
        embedders = cache / "apprentice" / "embedders"
        exports = {}
        recipes = [OnnxRecipe()] if args.quick else [OnnxRecipe(), OnnxRecipe(quantize=False)]
        recipes += [] if args.quick else [OnnxRecipe(fuse=True)]
        for recipe in recipes:
            started = time.perf_counter()
            ensure_onnx_model(recipe=recipe, cache_dir=embedders)
            exports[recipe.tag] = round(time.perf_counter() - started, 1)
        loaded = [load(config, corpus) for config in configs(embedders, args.quick)]
        # Passes interleave the configurations, so a burst of load elsewhere on the
        # shared machine hits them all alike; the best pass counts.
        for _ in range(args.repeat):
            for item in loaded:
                started = time.perf_counter()
                embed_all(item.embedder, item.texts, item.config)
                item.seconds.append(time.perf_counter() - started)
        rows: list[dict[str, object]] = []
        all_vectors: list[np.ndarray] = []
        for item in loaded:
            row, vectors = score(item, corpus)
            rows.append(row)
            all_vectors.append(vectors)
            print(f"  measured {item.config.label}: {row['chunks/s']} chunks/s", file=sys.stderr)
        cold = {kind: round(cold_start(kind, cache), 2) for kind in ("minilm-onnx", "minilm-torch")}

    # Reference vectors: the first torch row of each sequence length.
    reference: dict[str, np.ndarray] = {}
    for row, vectors in zip(rows, all_vectors, strict=True):
        seq = _SEQ.search(str(row["config"]))
        key = seq.group(1) if seq and "words only" not in str(row["config"]) else ""
        if str(row["name"]).startswith("all-MiniLM-L6-v2/torch/"):
            reference.setdefault(key, vectors)
        same = reference.get(key)
        row["cos→torch"] = (
            round(float((vectors * same).sum(axis=1).mean()), 4) if key in reference else "-"
        )

    columns = [c for c in rows[0] if c != "name"]
    print(f"\nbench/embedding.py: all-MiniLM-L6-v2, {len(corpus.texts)} stdlib chunks, ", end="")
    print(f"{len(QUERIES)} hand queries, {len(corpus.doc_queries)} docstring queries")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    print(f"\nONNX export, once per cache (s): {exports}")
    print(f"cold start, fresh process to first vector (s): {cold}")
    print("cos→torch: mean cosine to sentence-transformers fp32 vectors at the same length.")
    print("load s: in this process; the first row of each backend pays its imports.")
    if args.json:
        payload = {"rows": rows, "exports_s": exports, "cold_start_s": cold}
        args.json.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
