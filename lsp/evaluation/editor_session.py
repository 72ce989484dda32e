"""One server session of ``apprentice eval --trigger automatic|typed``: files opened, typed into
and asked about as an editor does, and what was shown at the pause applied and scored.

lsp/evaluation/editor.py starts the server and runs the tasks through this. A task's file
is opened (``didOpen``), read for the delay, then either asked about once (automatic) or
typed into a keystroke at a time (typed: ``didChange``, an automatic request, and
``$/cancelRequest`` for the previous request while its answer has not come), and closed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient

from lsp.evaluation.lsp_client import (
    CURSOR_NOTIFICATION,
    first_item,
    item_text,
    offset_at,
    position_at,
    process_of,
)
from lsp.evaluation.metrics import Score
from lsp.evaluation.runner import executable, score_completed
from lsp.evaluation.shown import ShownResult
from model.training.holes import EditorView, HoleTask, Placement, place, typed_start
from model.training.sandbox import SandboxLimits

logger = logging.getLogger(__name__)

KEYSTROKE_S = 0.125  # 8 characters a second
INDENT_UNIT = "    "


@dataclass(frozen=True)
class Keystroke:
    """One edit of the buffer (code-point offsets) and where it leaves the cursor."""

    start: int
    end: int
    text: str

    @property
    def cursor(self) -> int:
        return self.start + len(self.text)


def typing_keystrokes(line_start: int, indent: str, typed: str) -> list[Keystroke]:
    """From a line holding ``indent`` (the editor's auto-indent) to one holding ``typed``.

    The indentation is fixed first as an editor's keys fix it (Tab inserts a level,
    Backspace in leading whitespace deletes one; anything else is one edit), then the
    rest is typed one character at a time.
    """
    wanted = typed[: len(typed) - len(typed.lstrip())]
    keys = []
    current = indent
    while current != wanted:
        here = line_start + len(current)
        if wanted.startswith(current + INDENT_UNIT):
            keys.append(Keystroke(here, here, INDENT_UNIT))
            current += INDENT_UNIT
        elif current.endswith(INDENT_UNIT) and current[: -len(INDENT_UNIT)].startswith(wanted):
            keys.append(Keystroke(here - len(INDENT_UNIT), here, ""))
            current = current[: -len(INDENT_UNIT)]
        else:
            keys.append(Keystroke(line_start, here, wanted))
            current = wanted
    offset = line_start + len(wanted)
    for i, char in enumerate(typed[len(wanted) :]):
        keys.append(Keystroke(offset + i, offset + i, char))
    return keys


@dataclass
class _Request:
    """One automatic request and its answer."""

    msg_id: int
    sent_at: float
    future: asyncio.Future[Any]
    answered_at: float | None = None


class EditorSession:
    """Opens tasks' files in one running server and asks as an editor does."""

    def __init__(
        self,
        client: LanguageClient,
        root: Path,
        *,
        timeout_s: float,
        in_place: bool = False,
        keystroke_s: float = KEYSTROKE_S,
        sandbox: SandboxLimits | None = None,
    ) -> None:
        self.client = client
        self.root = root
        self.timeout_s = timeout_s  # an answer later than this is a timeout
        # Open each task's own file (repository holes) instead of a new one (HumanEval).
        self.in_place = in_place
        self.keystroke_s = keystroke_s
        self.sandbox = sandbox or SandboxLimits()
        self._files = itertools.count(1)
        self._ids = itertools.count(1_000_000)

    def _path_for(self, task: HoleTask) -> Path:
        """HumanEval: a new file per task (a fresh name, its own folder keeps the file name).
        Repository holes: the task's own file, whose masked text the index holds; the buffer
        is only opened, never saved, so no other hole's answer reaches the index."""
        if self.in_place:
            return self.root / task.path
        path = self.root / f"task-{next(self._files):04d}" / Path(task.path).name
        return path

    def _open(self, path: Path, text: str) -> str:
        if not self.in_place:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        uri = path.as_uri()
        item = lsp.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
        self.client.text_document_did_open(lsp.DidOpenTextDocumentParams(item))
        return uri

    def _cursor_rests(self, uri: str, text: str, offset: int) -> None:
        """``apprentice/cursor``, as Apprentice's VS Code and Neovim clients send it when a
        document becomes active: the server warms the prompt for that place."""
        position = position_at(text, offset)
        where = {"line": position.line, "character": position.character}
        self.client.protocol.notify(
            CURSOR_NOTIFICATION, {"textDocument": {"uri": uri}, "position": where}
        )

    def _close(self, uri: str) -> None:
        identifier = lsp.TextDocumentIdentifier(uri=uri)
        self.client.text_document_did_close(lsp.DidCloseTextDocumentParams(identifier))

    def _ask(self, uri: str, text: str, offset: int) -> _Request:
        """An automatic inline-completion request at ``offset``, with our own id (so that
        ``$/cancelRequest`` can name it: cancelling pygls's future sends nothing)."""
        self.check_alive()
        params = lsp.InlineCompletionParams(
            text_document=lsp.TextDocumentIdentifier(uri=uri),
            position=position_at(text, offset),
            context=lsp.InlineCompletionContext(
                trigger_kind=lsp.InlineCompletionTriggerKind.Automatic
            ),
        )
        msg_id = next(self._ids)
        sent_at = time.monotonic()
        future = self.client.protocol.send_request_async(
            lsp.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id
        )
        request = _Request(msg_id, sent_at, future)

        def answered(done: asyncio.Future[Any]) -> None:
            request.answered_at = time.monotonic()
            if not done.cancelled():
                done.exception()  # a cancelled request's error is expected: mark it read

        future.add_done_callback(answered)
        return request

    def _cancel(self, request: _Request) -> None:
        self.client.cancel_request(lsp.CancelParams(id=request.msg_id))

    def check_alive(self) -> None:
        """Raise when the server process has exited (every later request would hang)."""
        process = process_of(self.client)
        if process is not None and process.returncode is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")

    async def automatic(self, task: HoleTask, placement: Placement, delay_s: float) -> ShownResult:
        """Open, read for ``delay_s``, one automatic request at the placement's cursor."""
        view = place(task, placement)
        path = self._path_for(task)
        uri = self._open(path, view.text)
        self._cursor_rests(uri, view.text, view.offset)
        try:
            await asyncio.sleep(delay_s)
            request = self._ask(uri, view.text, view.offset)
            outcome, item = await self._answer(request)
        finally:
            self._close(uri)
        return await self._score(task, view, path, outcome, item, request, requests=1, cancels=0)

    async def typed(self, task: HoleTask, delay_s: float) -> ShownResult:
        """Open at the auto-indent, read for ``delay_s``, type the answer's first characters."""
        start, end = place(task, "indent"), place(task, "typed")
        line_start = start.offset - len(start.text[: start.offset].rsplit("\n", 1)[-1])
        keys = typing_keystrokes(
            line_start, start.text[line_start : start.offset], typed_start(task.answer)
        )
        if _typed(start, keys) != (end.text, end.offset):
            raise AssertionError(f"{task.task_id}: the keystrokes do not reach the typed text")
        path = self._path_for(task)
        uri = self._open(path, start.text)
        self._cursor_rests(uri, start.text, start.offset)
        text, cursor, cancels = start.text, start.offset, 0
        try:
            await asyncio.sleep(delay_s)
            request: _Request | None = None
            due = time.monotonic()
            for version, key in enumerate(keys, start=2):
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if request is not None and not request.future.done():
                    self._cancel(request)
                    cancels += 1
                self._change(uri, text, key, version)
                text, cursor = text[: key.start] + key.text + text[key.end :], key.cursor
                request = self._ask(uri, text, cursor)
                due += self.keystroke_s
            if request is None:  # nothing to type (a line of punctuation): ask where it is
                request = self._ask(uri, text, cursor)
            outcome, item = await self._answer(request)
        finally:
            self._close(uri)
        return await self._score(
            task, end, path, outcome, item, request, requests=max(1, len(keys)), cancels=cancels
        )

    def _change(self, uri: str, text: str, key: Keystroke, version: int) -> None:
        """An incremental ``didChange``: the keystroke's range and its text."""
        change = lsp.TextDocumentContentChangePartial(
            range=lsp.Range(position_at(text, key.start), position_at(text, key.end)),
            text=key.text,
        )
        self.client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[change],
            )
        )

    async def _answer(self, request: _Request) -> tuple[str, lsp.InlineCompletionItem | None]:
        """Wait for the answer; (outcome, first item). A late request is cancelled."""
        done, _ = await asyncio.wait({request.future}, timeout=self.timeout_s)
        if not done:
            self._cancel(request)
            return "timeout", None
        if request.future.exception() is not None:
            logger.info("request %d failed: %s", request.msg_id, request.future.exception())
            return "error", None
        item = first_item(request.future.result())
        if item is None or not item_text(item).strip():
            return "empty", None
        return "items", item

    async def _score(
        self,
        task: HoleTask,
        view: EditorView,
        path: Path,
        outcome: str,
        item: lsp.InlineCompletionItem | None,
        request: _Request,
        *,
        requests: int,
        cancels: int,
    ) -> ShownResult:
        text, replaced, completed = "", 0, view.text
        if item is not None:
            text = item_text(item)
            start = end = view.offset
            if item.range is not None:
                start = offset_at(view.text, item.range.start)
                end = offset_at(view.text, item.range.end)
            completed = view.text[:start] + text + view.text[end:]
            replaced = view.offset - start
        limits = self.sandbox
        # The sandbox blocks for up to its timeout: off the loop, which reads the server.
        scored = await asyncio.to_thread(score_completed, task, completed, text, limits)
        answered = request.answered_at if outcome in ("items", "empty") else None
        return ShownResult(
            task_id=task.task_id,
            kind=task.kind,
            placement=view.placement,
            outcome=outcome,
            suggestion=text if item is not None else None,
            replaced=replaced,
            score=scored,
            time_to_show_ms=None if answered is None else (answered - request.sent_at) * 1000,
            requests=requests,
            cancels_sent=cancels,
            path=path.relative_to(self.root).as_posix(),
            cross_file=task.cross_file,
        )


def _typed(view: EditorView, keys: Sequence[Keystroke]) -> tuple[str, int]:
    """The buffer and cursor after ``keys`` (a check that typing ends where it should)."""
    text, cursor = view.text, view.offset
    for key in keys:
        text, cursor = text[: key.start] + key.text + text[key.end :], key.cursor
    return text, cursor


def failed(task: HoleTask, placement: Placement) -> ShownResult:
    """A task whose run raised (a bug, logged): nothing shown, counted as an error."""
    nothing = Score(exact=False, edit_similarity=0.0, identifier_f1=0.0, empty=True)
    if executable(task):  # else pass@1 is not measured: None, never a failure
        nothing = Score(False, 0.0, 0.0, empty=True, passed=False)
    return ShownResult(task.task_id, task.kind, placement, "error", None, 0, nothing, None)
