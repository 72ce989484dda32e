"""A real ``apprentice serve`` subprocess driven as an editor drives it, for benchmarks.

Shared by bench/typing_trace.py (keystroke latency) and ``apprentice eval --trigger
automatic|typed`` (what a person sees at a pause): a pygls ``LanguageClient`` that answers
the server's requests as an editor would, the server's stderr copied to a log file, status
polling until the model and the index are ready, and a session that always ends with
``shutdown`` + ``exit`` (also on an error or Ctrl-C), the process killed only when it does
not go.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUEST_CANCELLED = -32800
STATUS_COMMAND = "apprentice.status"
STATUS_NOTIFICATION = "apprentice/status"  # the server's pushed state, for a status bar
# What Apprentice's editor clients send where the cursor rests (the server warms there).
CURSOR_NOTIFICATION = "apprentice/cursor"
# The server's index states that mean "still working" (the others: off, ready, error).
INDEX_BUSY = {"waiting", "indexing", "embedding"}
# How long a clean shutdown may take before the process is terminated (then killed).
SHUTDOWN_S = 10.0


class EditorClient(LanguageClient):
    """A language client that answers the server's requests as an editor would."""

    def __init__(self, name: str = "apprentice-bench") -> None:
        super().__init__(name, "1")
        for method in (
            lsp.WINDOW_WORK_DONE_PROGRESS_CREATE,
            lsp.CLIENT_REGISTER_CAPABILITY,
            lsp.PROGRESS,
            lsp.WINDOW_LOG_MESSAGE,
            lsp.WINDOW_SHOW_MESSAGE,
            lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS,
            STATUS_NOTIFICATION,
        ):
            # Say yes and do nothing: benchmarks watch requests, not progress or messages.
            # (pygls tags each handler, so every method gets a function of its own.)
            self.feature(method)(lambda params: None)
        self.feature(lsp.WORKSPACE_CONFIGURATION)(lambda params: [None for _ in params.items])


def server_command() -> list[str]:
    """``apprentice serve`` with this interpreter (the one whose packages are installed)."""
    return [sys.executable, "-m", "lsp.cli", "serve"]


def server_env() -> dict[str, str]:
    """Our environment, with the repository importable from any working directory."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def drain(stream: asyncio.StreamReader | None, log: Path) -> None:
    """Copy the server's stderr to a file: an unread pipe would fill up and stall the server."""
    if stream is None:
        return
    with log.open("ab") as sink:
        while chunk := await stream.read(65536):
            sink.write(chunk)
            sink.flush()


def process_of(client: LanguageClient) -> asyncio.subprocess.Process | None:
    """The server process ``start_io`` made; pygls keeps it private (pytest-lsp reads it too)."""
    process = getattr(client, "_server", None)
    return process if isinstance(process, asyncio.subprocess.Process) else None


async def status(client: LanguageClient) -> dict[str, Any]:
    """``apprentice.status`` (an empty dict where the answer is not an object)."""
    result = await client.workspace_execute_command_async(
        lsp.ExecuteCommandParams(command=STATUS_COMMAND, arguments=[])
    )
    return result if isinstance(result, dict) else {}


async def wait_ready(client: LanguageClient, timeout_s: float) -> dict[str, Any]:
    """Poll the status until the model is loaded and the index has settled."""
    deadline = time.monotonic() + timeout_s
    process = process_of(client)
    while True:
        if process is not None and process.returncode is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        # A server that died between polls never answers: bound each poll too.
        found = await asyncio.wait_for(status(client), max(1.0, deadline - time.monotonic()))
        model = found.get("model", {})
        if model.get("state") == "error":
            raise RuntimeError(f"the server could not load the model: {model.get('error')}")
        index = found.get("index", {})
        if index.get("state") == "error":
            raise RuntimeError(f"the server could not index the workspace: {index.get('error')}")
        if model.get("state") == "ready" and index.get("state") not in INDEX_BUSY:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"not ready after {timeout_s:.0f} s: {json.dumps(found)}")
        await asyncio.sleep(0.25)


def initialize_params(
    root: Path, options: dict[str, Any], name: str = "apprentice-bench"
) -> lsp.InitializeParams:
    """What VS Code would announce, trimmed to what the benchmarks exercise."""
    return lsp.InitializeParams(
        process_id=os.getpid(),
        root_uri=root.as_uri(),
        workspace_folders=[lsp.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
        capabilities=lsp.ClientCapabilities(
            general=lsp.GeneralClientCapabilities(
                position_encodings=[lsp.PositionEncodingKind.Utf16]
            ),
            window=lsp.WindowClientCapabilities(work_done_progress=True),
            text_document=lsp.TextDocumentClientCapabilities(
                synchronization=lsp.TextDocumentSyncClientCapabilities(did_save=True),
                inline_completion=lsp.InlineCompletionClientCapabilities(),
            ),
        ),
        client_info=lsp.ClientInfo(name=name),
        initialization_options=options,
    )


def first_item(result: Any) -> lsp.InlineCompletionItem | None:
    """The first item of an inline-completion answer (a list or an InlineCompletionList)."""
    items = result.items if isinstance(result, lsp.InlineCompletionList) else (result or [])
    return items[0] if items else None


def item_text(item: lsp.InlineCompletionItem) -> str:
    """An item's insert text (a snippet's body taken as it is)."""
    text = item.insert_text
    return text if isinstance(text, str) else text.value


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units (the position encoding the client offers)."""
    return len(text.encode("utf-16-le")) // 2


def position_at(text: str, offset: int) -> lsp.Position:
    """The LSP position (UTF-16 columns) of a code-point offset in ``text``."""
    line_start = text.rfind("\n", 0, offset) + 1
    return lsp.Position(text.count("\n", 0, offset), utf16_len(text[line_start:offset]))


def offset_at(text: str, position: lsp.Position) -> int:
    """The code-point offset of an LSP position in ``text`` (clamped to its line)."""
    start = 0
    for _ in range(position.line):
        newline = text.find("\n", start)
        if newline < 0:
            return len(text)
        start = newline + 1
    end = text.find("\n", start)
    line = text[start : len(text) if end < 0 else end]
    units = column = 0
    while column < len(line) and units < position.character:
        units += utf16_len(line[column])
        column += 1
    return start + column


@contextlib.asynccontextmanager
async def serve(
    root: Path,
    options: dict[str, Any],
    log: Path,
    *,
    command: Sequence[str] = (),
    name: str = "apprentice-bench",
    start_timeout_s: float = 120.0,
) -> AsyncIterator[EditorClient]:
    """A started, initialized server on ``root``; shut down cleanly when the block ends.

    The server runs in a session of its own, so a Ctrl-C in the terminal reaches only this
    process, which then shuts the server down over the protocol as an editor does.
    """
    client = EditorClient(name)
    await client.start_io(*(command or server_command()), env=server_env(), start_new_session=True)
    process = process_of(client)
    copier = asyncio.create_task(drain(process.stderr if process else None, log))
    try:
        await asyncio.wait_for(
            client.initialize_async(initialize_params(root, options, name)), start_timeout_s
        )
        client.initialized(lsp.InitializedParams())
        yield client
    finally:
        await _stop(client, process)
        await copier


async def _stop(client: LanguageClient, process: asyncio.subprocess.Process | None) -> None:
    """``shutdown`` + ``exit``; terminate, then kill, a server that does not go in time."""
    if process is not None and process.returncode is None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.shutdown_async(None), SHUTDOWN_S)
            client.exit(None)
        try:
            await asyncio.wait_for(process.wait(), SHUTDOWN_S)
        except TimeoutError:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), SHUTDOWN_S)
            except TimeoutError:
                process.kill()
                await process.wait()
    await client.stop()
