"""End-to-end fixtures: ``apprentice serve`` as a subprocess under a pytest-lsp client.

Each test gets its own server (``client``) and a ``Session`` wrapping it: a copy of the
sample repository as the workspace, an index directory under ``tmp_path`` (nothing is
written to the user's cache), and helpers that wait on ``apprentice.status`` instead of
sleeping.

Every test in this folder is marked ``e2e`` (tests/conftest.py), so ``make check`` leaves
them all to ``make test``: the servers load the default model as an editor's would, and
test_index_kill.py kills ``apprentice index`` mid-run again and again.
"""

from __future__ import annotations

import asyncio
import copy
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_REPO = REPO_ROOT / "tests" / "data" / "sample_repo"
SERVER_COMMAND = [sys.executable, "-m", "lsp.cli", "serve"]
# Generous: the test machine is slow and shared; these bound a hang, they time nothing.
READY_TIMEOUT_S = 240.0
POLL_S = 0.05


def server_env() -> dict[str, str]:
    """The server's environment: ours, with the repository importable from any directory."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=SERVER_COMMAND, server_env=server_env())
)
async def client(lsp_client: LanguageClient) -> AsyncIterator[None]:
    """A started (not yet initialized) server; shut down cleanly after the test."""
    yield
    await lsp_client.shutdown_session()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A private copy of the sample repository: tests may edit and add files."""
    root = tmp_path / "workspace"
    shutil.copytree(SAMPLE_REPO, root)
    return root


@pytest.fixture
def session(client: LanguageClient, tmp_path: Path, workspace: Path) -> Session:
    """Helpers bound to this test's client, workspace and index directory."""
    return Session(client, tmp_path, workspace)


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` laid over ``base``, nested objects merged key by key."""
    result = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def capabilities(
    *, encodings: Sequence[str] = ("utf-16",), progress: bool = True
) -> types.ClientCapabilities:
    """What a modern editor advertises: inline completion, code action resolve, progress."""
    return types.ClientCapabilities(
        general=types.GeneralClientCapabilities(position_encodings=list(encodings)),
        window=types.WindowClientCapabilities(work_done_progress=progress),
        workspace=types.WorkspaceClientCapabilities(
            did_change_configuration=types.DidChangeConfigurationClientCapabilities()
        ),
        text_document=types.TextDocumentClientCapabilities(
            synchronization=types.TextDocumentSyncClientCapabilities(did_save=True),
            inline_completion=types.InlineCompletionClientCapabilities(),
            completion=types.CompletionClientCapabilities(
                completion_item=types.ClientCompletionItemOptions(
                    label_details_support=True,
                    documentation_format=[types.MarkupKind.Markdown, types.MarkupKind.PlainText],
                )
            ),
            code_action=types.CodeActionClientCapabilities(
                code_action_literal_support=types.ClientCodeActionLiteralOptions(
                    code_action_kind=types.ClientCodeActionKindOptions(
                        value_set=[types.CodeActionKind.QuickFix]
                    )
                ),
                resolve_support=types.ClientCodeActionResolveOptions(properties=["edit"]),
                data_support=True,
            ),
        ),
    )


def units(text: str, encoding: str) -> int:
    """The length of ``text`` in an LSP position encoding's code units."""
    if encoding == "utf-8":
        return len(text.encode("utf-8"))
    if encoding == "utf-16":
        return len(text.encode("utf-16-le")) // 2
    return len(text)


def offset_at(text: str, position: types.Position, encoding: str) -> int:
    """The code point offset of a client position, computed on the client's side."""
    lines = text.split("\n")
    start = sum(len(line) + 1 for line in lines[: position.line])
    line = lines[position.line]
    column = 0
    while column < len(line) and units(line[:column], encoding) < position.character:
        column += 1
    assert units(line[:column], encoding) == position.character, "position inside a character"
    return start + column


def end_of(text: str, encoding: str = "utf-16") -> types.Position:
    """The position at the end of a text's last non-empty line (before its final newline)."""
    lines = text.rstrip("\n").split("\n")
    return types.Position(line=len(lines) - 1, character=units(lines[-1], encoding))


def apply_edits(text: str, edits: Sequence[types.TextEdit], encoding: str = "utf-16") -> str:
    """The text after a set of non-overlapping edits, applied as an editor would."""
    spans = [
        (offset_at(text, e.range.start, encoding), offset_at(text, e.range.end, encoding), e)
        for e in edits
    ]
    for start, end, edit in sorted(spans, key=lambda span: span[0], reverse=True):
        text = text[:start] + edit.new_text + text[end:]
    return text


def items_of(
    answer: types.InlineCompletionList | Sequence[types.InlineCompletionItem] | None,
) -> list[types.InlineCompletionItem]:
    """The items of an inline completion answer, whichever of its shapes it came in."""
    if answer is None:
        return []
    if isinstance(answer, types.InlineCompletionList):
        return list(answer.items)
    return list(answer)


class Session:
    """One test's conversation with the server."""

    def __init__(self, client: LanguageClient, tmp_path: Path, workspace: Path) -> None:
        self.client = client
        self.tmp_path = tmp_path
        self.workspace = workspace
        self.index_dir = tmp_path / "index"
        self.versions: dict[str, int] = {}

    def options(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """``initializationOptions``: index in ``tmp_path``, no embeddings, then ``extra``."""
        base = {"index": {"location": str(self.index_dir), "embeddings": False}}
        return merge(base, extra or {})

    async def initialize(
        self,
        extra: dict[str, Any] | None = None,
        *,
        options: dict[str, Any] | None = None,
        caps: types.ClientCapabilities | None = None,
        root: Path | None = None,
    ) -> types.InitializeResult:
        """``initialize`` + ``initialized`` on the workspace (``options`` replaces the defaults)."""
        root = root or self.workspace
        return await self.client.initialize_session(
            types.InitializeParams(
                capabilities=caps or capabilities(),
                root_uri=root.as_uri(),
                workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
                initialization_options=options if options is not None else self.options(extra),
            )
        )

    async def command(self, name: str, *arguments: Any) -> Any:
        """``workspace/executeCommand``."""
        return await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=name, arguments=list(arguments) or None)
        )

    async def status(self) -> dict[str, Any]:
        """``apprentice.status``."""
        answer = await self.command("apprentice.status")
        assert isinstance(answer, dict), f"apprentice.status answered {answer!r}"
        return answer

    async def wait_until(
        self, check: Callable[[], bool], what: str, timeout: float = READY_TIMEOUT_S
    ) -> None:
        """Poll a condition on what the client has received."""
        end = time.monotonic() + timeout
        while not check():
            if time.monotonic() > end:
                pytest.fail(f"timed out waiting for {what}")
            await asyncio.sleep(POLL_S)

    async def wait_status(
        self,
        check: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float = READY_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Poll ``apprentice.status`` until ``check`` holds; the last status is returned."""
        end = time.monotonic() + timeout
        while True:
            status = await self.status()
            if check(status):
                return status
            if time.monotonic() > end:
                pytest.fail(f"timed out waiting for {what}; last status: {status}")
            await asyncio.sleep(POLL_S)

    async def wait_ready(self, *, index: bool = True) -> dict[str, Any]:
        """Wait until the model (and the index) are ready; a model error fails at once."""

        def ready(status: dict[str, Any]) -> bool:
            model = status["model"]
            assert model["state"] != "error", f"the model did not load: {model}"
            return model["state"] == "ready" and (
                not index or status["index"]["state"] in ("ready", "off")
            )

        return await self.wait_status(ready, "the model and the index to be ready")

    def uri(self, rel: str) -> str:
        """The URI of a workspace file."""
        return (self.workspace / rel).as_uri()

    def open(self, rel: str, text: str | None = None, language: str = "python") -> str:
        """``didOpen`` a workspace file (written to disk when ``text`` is given); its URI."""
        path = self.workspace / rel
        if text is None:
            text = path.read_text(encoding="utf-8")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        uri = path.as_uri()
        self.versions[uri] = 1
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id=language, version=1, text=text
                )
            )
        )
        return uri

    def insert(self, uri: str, position: types.Position, text: str) -> int:
        """An incremental ``didChange`` inserting ``text``; the new version."""
        version = self.versions[uri] + 1
        self.versions[uri] = version
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(start=position, end=position), text=text
                    )
                ],
            )
        )
        return version

    def inline_params(
        self, uri: str, position: types.Position, *, invoked: bool = True
    ) -> types.InlineCompletionParams:
        """Parameters of an inline completion request."""
        kind = (
            types.InlineCompletionTriggerKind.Invoked
            if invoked
            else types.InlineCompletionTriggerKind.Automatic
        )
        return types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=position,
            context=types.InlineCompletionContext(trigger_kind=kind),
        )

    async def inline(
        self, uri: str, position: types.Position, *, invoked: bool = True
    ) -> list[types.InlineCompletionItem]:
        """``textDocument/inlineCompletion``: the items (a bare list or an InlineCompletionList)."""
        answer = await self.client.text_document_inline_completion_async(
            self.inline_params(uri, position, invoked=invoked)
        )
        return items_of(answer)
