"""``make demo``: one real completion from the embedded model on a sample repository."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT_REPO = Path("tests/data/sample_repo")
DEFAULT_FILE = "shop/config.py"


def _end_of_last_line(text: str) -> tuple[int, int]:
    lines = text.rstrip("\n").split("\n")
    return len(lines) - 1, len(lines[-1])


def main(argv: list[str] | None = None) -> int:
    """Complete at the end of the sample file and print the suggestion with its latency."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", type=Path, default=DEFAULT_REPO)
    parser.add_argument("--file", default=DEFAULT_FILE)
    args = parser.parse_args(argv)

    from indexer.languages import language_for
    from lint_bridge.verify import Verifier
    from lsp.pipeline import CompletionPipeline, Cursor
    from model.factory import BackendSettings, create_backend

    path = args.repo / args.file
    text = path.read_text(encoding="utf-8")
    line, column = _end_of_last_line(text)
    started = time.monotonic()
    backend = create_backend(BackendSettings())
    try:
        info = backend.info()
        loaded = time.monotonic() - started
        offset = len(text.rstrip("\n"))
        cursor = Cursor(
            path=args.file,
            language=language_for(path),
            text=text,
            offset=offset,
            abs_path=path.resolve(),
        )
        verifier = Verifier(workspace_root=args.repo.resolve())
        result = CompletionPipeline(backend, verifier=verifier).complete(cursor)
    finally:
        backend.close()
    out = sys.stdout
    out.write(f"model      {info.name} ({info.architecture}), loaded in {loaded:.2f}s\n")
    out.write(f"file       {path} at line {line}, column {column}\n")
    out.write("---- context (last lines) ----\n")
    out.write("\n".join(text.rstrip("\n").split("\n")[-3:]) + "\n")
    out.write("---- suggestion ----\n")
    out.write((result.text or "(none)").lstrip("\n") + "\n")
    out.write("--------------------\n")
    out.write(
        f"verdict    {result.verdict} after {result.candidates} candidate(s)"
        + (f" (rejected: {', '.join(result.rejected_reasons)})" if result.rejected_reasons else "")
        + "\n"
    )
    out.write(
        f"latency    {result.latency_ms:.0f} ms, {result.prompt_tokens} prompt tokens, "
        f"{result.completion_tokens} generated ({result.mode} prompt)\n"
    )
    return 0 if result.text else 1


if __name__ == "__main__":
    sys.exit(main())
