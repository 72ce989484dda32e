"""``make demo``: index a sample repository, start ``apprentice serve``, ask it over LSP.

A real LSP client (pygls's) starts the server as a subprocess, initializes it on the
sample repository (which the server indexes in the background, reporting progress),
opens a file and asks for an inline completion at the end of its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

DEFAULT_REPO = Path("tests/data/sample_repo")
DEFAULT_FILE = "shop/config.py"
SERVE_ARGS: list[str] = []


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def _status(client: LanguageClient) -> dict[str, Any]:
    answer = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="apprentice.status")
    )
    if not isinstance(answer, dict):
        raise RuntimeError(f"apprentice.status answered {answer!r}")
    return answer


async def _wait_ready(client: LanguageClient, timeout: float) -> dict[str, Any]:
    """Poll ``apprentice.status`` until the model and the index are ready (or failed)."""
    end = time.monotonic() + timeout
    while True:
        status = await _status(client)
        model, index = status["model"]["state"], status["index"]["state"]
        if model == "error":
            raise RuntimeError(f"the model did not load: {status['model']['error']}")
        if model == "ready" and index in ("ready", "error", "off"):
            return status
        if time.monotonic() > end:
            raise RuntimeError(f"not ready after {timeout:.0f}s: model {model}, index {index}")
        await asyncio.sleep(0.1)


async def run(repo: Path, file: str, workdir: Path) -> int:
    """Drive one inline completion through the server and print it."""
    workspace = workdir / "workspace"
    shutil.copytree(repo, workspace)
    path = workspace / file
    text = path.read_text(encoding="utf-8")
    lines = text.rstrip("\n").split("\n")
    position = types.Position(line=len(lines) - 1, character=len(lines[-1]))

    client = LanguageClient("apprentice-demo", "0.1")
    progress: list[str] = []

    @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
    def create_progress(params: types.WorkDoneProgressCreateParams) -> None:
        return None

    @client.feature(types.PROGRESS)
    def on_progress(params: types.ProgressParams) -> None:
        value = params.value
        if isinstance(value, dict) and value.get("kind") in ("begin", "end"):
            progress.append(str(value.get("message") or value.get("title") or ""))

    @client.feature(types.WINDOW_SHOW_MESSAGE)
    def show_message(params: types.ShowMessageParams) -> None:
        _say(f"[server] {params.message}")

    started = time.monotonic()
    await client.start_io(sys.executable, "-m", "lsp.cli", "serve", *SERVE_ARGS)
    try:
        await client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(
                    window=types.WindowClientCapabilities(work_done_progress=True)
                ),
                root_uri=workspace.as_uri(),
                initialization_options={
                    "index": {"location": str(workdir / "index"), "embeddings": False}
                },
            )
        )
        client.initialized(types.InitializedParams())
        status = await _wait_ready(client, timeout=300)
        ready = time.monotonic() - started
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=path.as_uri(), language_id="python", version=1, text=text
                )
            )
        )
        asked = time.monotonic()
        answer = await client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=path.as_uri()),
                position=position,
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Invoked
                ),
            )
        )
        latency_ms = (time.monotonic() - asked) * 1000
        status = await _status(client)
        await client.shutdown_async(None)
        client.exit(None)
    finally:
        await client.stop()
    items = answer.items if isinstance(answer, types.InlineCompletionList) else answer or []
    index = status["index"]
    _say(f"server     apprentice serve, ready in {ready:.1f}s ({status['backend']})")
    _say(f"model      {status['model']['name']} ({status['model']['architecture']})")
    _say(
        f"index      {index.get('files', 0)} files, {index.get('chunks', 0)} chunks, "
        f"{index.get('symbols', 0)} symbols ({'; '.join(p for p in progress if p)})"
    )
    _say(f"file       {file} at line {position.line}, column {position.character}")
    _say("---- context (last lines) ----")
    _say("\n".join(lines[-3:]))
    _say("---- suggestion (textDocument/inlineCompletion) ----")
    _say(str(items[0].insert_text).lstrip("\n") if items else "(none)")
    _say("--------------------")
    requests = status["requests"]
    _say(
        f"latency    {latency_ms:.0f} ms request to reply, the first in this file: its "
        f"{status['tokens']['prompt']}-token prompt starts cold (typing along reuses it: "
        "`make bench`)"
    )
    _say(f"verified   {requests['shown']} shown; every suggestion sent has passed verification")
    return 0 if items else 1


def main(argv: list[str] | None = None) -> int:
    """Run the demo; exit 1 when the server gave no suggestion."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", type=Path, default=DEFAULT_REPO)
    parser.add_argument("--file", default=DEFAULT_FILE)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="apprentice-demo-") as tmp:
        return asyncio.run(run(args.repo.resolve(), args.file, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
