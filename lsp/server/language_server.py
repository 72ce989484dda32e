"""``apprentice serve``: the pygls language server and its handlers.

Handlers are thin: each takes the document, calls one service (completions, index,
fixes) and converts the answer with ``lsp.server.convert``. State lives on ``ApprenticeServer``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any, BinaryIO

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.workspace import TextDocument

from lsp.core.settings import ServerSettings, settings_as_json
from lsp.core.user_settings import layered, load_user_settings
from lsp.server import convert, framing, scope, uris
from lsp.server.actions import CodeActions
from lsp.server.completions import CompletionService, Suggestion
from lsp.server.engine import Engine
from lsp.server.indexing import IndexService
from lsp.server.protocol import ApprenticeProtocol
from lsp.server.status_push import StatusPush
from lsp.server.watching import Rescans, register_watcher
from lsp.server.work_progress import WorkProgress

logger = logging.getLogger(__name__)

SERVER_NAME = "apprentice"
SERVER_VERSION = "0.1.0"
REINDEX = "apprentice.reindex"
STATUS = "apprentice.status"
# Client -> server: where the cursor rests (a file became active, the cursor moved to
# another line and stayed): the prompt for that place is warmed before the next keystroke.
CURSOR = "apprentice/cursor"


class ApprenticeServer(LanguageServer):
    """The language server and everything it holds: settings, model engine, index, caches."""

    def __init__(self) -> None:
        super().__init__(SERVER_NAME, SERVER_VERSION, protocol_cls=ApprenticeProtocol)
        self.settings = ServerSettings()
        self.root: Path | None = None
        self.engine: Engine | None = None
        self.completions: CompletionService | None = None
        self.index: IndexService | None = None
        self.actions: CodeActions | None = None
        self.rescans = Rescans(lambda: self.index, self.spawn)
        self._shown: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._progress_count = 0
        self._refused: set[str] = set()
        self._warmed_at: tuple[str, int | None, int] | None = None
        self.main_loop: asyncio.AbstractEventLoop | None = None
        self.status_push = StatusPush(self)  # apprentice/status, sent as the state changes

    # -- messages ------------------------------------------------------------------------

    def report(self, key: str, message: str) -> None:
        """Show an actionable error once per cause (from any thread); always log it."""
        self.call_soon(self._show_once, key, message)

    def call_soon(self, callback: Any, *args: Any) -> None:
        """Run ``callback`` on the server's event loop, from any thread."""
        loop = self.main_loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(callback, *args)

    def _show_once(self, key: str, message: str) -> None:
        if key in self._shown:
            return
        self._shown.add(key)
        self.window_show_message(
            types.ShowMessageParams(type=types.MessageType.Error, message=message)
        )

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Protocol-level failures (malformed messages, a failing notification) are logged.

        pygls would show each one to the user as an error popup, which they cannot act on.
        A body that is not JSON gets the JSON-RPC parse error reply (-32700, id null).
        """
        logger.error("%s: %s", getattr(source, "__name__", source), error)
        protocol = self.protocol
        if not isinstance(protocol, ApprenticeProtocol):
            return
        if isinstance(error, json.JSONDecodeError | UnicodeDecodeError):
            protocol.reply_parse_error(str(error))
        elif isinstance(error, RecursionError):
            protocol.reply_parse_error("the message is nested too deeply")

    def start_io(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """Serve over stdio, through the framing limits of ``lsp.server.framing``."""
        framing.serve_io(self, self._refuse_frame, stdin, stdout)

    def start_tcp(self, host: str, port: int) -> None:
        """Serve one TCP client at a time, through the framing limits of ``lsp.server.framing``."""
        framing.serve_tcp(self, self._refuse_frame, host, port)

    def _refuse_frame(self, msg_id: int | str | None, why: str) -> None:
        protocol = self.protocol
        if isinstance(protocol, ApprenticeProtocol):
            protocol.reply_invalid_request(msg_id, why)

    def document(self, uri: str) -> TextDocument | None:
        """An open document; None for one the client never opened (no guessing from disk)."""
        return self.workspace.text_documents.get(uris.document_key(uri))

    def workspace_roots(self) -> list[Path]:
        """The workspace folders (pygls keeps them current), else the root the client named."""
        found = [uris.path_of(uri) for uri in self.workspace.folders]
        roots = [path for path in found if path is not None]
        return roots or ([self.root] if self.root is not None else [])

    def refused(self, uri: str) -> bool:
        """Whether a document gets no completions, actions or context: outside the workspace
        (``lsp.server.scope``), or out of sync (``lsp.server.sync``)."""
        protocol = self.protocol
        if isinstance(protocol, ApprenticeProtocol) and not protocol.in_sync(uri):
            return True
        why = scope.refusal(uri, self.workspace_roots())
        if why is not None and uri not in self._refused:
            if len(self._refused) > 1000:
                self._refused.clear()
            self._refused.add(uri)
            logger.warning("refusing %s: %s", uri, why)
        return why is not None

    def warn(self, message: str) -> None:
        """A one-off warning popup (bad settings)."""
        logger.warning("%s", message)
        self.window_show_message(
            types.ShowMessageParams(type=types.MessageType.Warning, message=message)
        )

    def spawn(self, coro: Any) -> None:
        """Run background work on the server's loop, keeping a reference until it ends."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("background task failed", exc_info=task.exception())

    # -- set-up ----------------------------------------------------------------------------

    def configure(self, raw: object, *, initial: bool) -> None:
        """Take new settings, laid over the user's settings file (read again each time): bad
        values are reported once and keep the file's value, else their default."""
        settings, problems = layered(raw, load_user_settings())
        if problems:
            self.warn("Apprentice: ignoring bad settings (defaults used): " + "; ".join(problems))
        logging.getLogger().setLevel(settings.log_level.upper())
        # pygls logs every message it sends at INFO: only worth it when debugging.
        logging.getLogger("pygls").setLevel("DEBUG" if settings.log_level == "debug" else "WARNING")
        old, self.settings = self.settings, settings
        if initial or self.engine is None:
            return
        self.engine.reconfigure(settings)
        self._shown.discard("model")
        assert self.completions is not None
        self.completions.debounce_s = settings.completion.debounce_ms / 1000
        if old.index != settings.index and self.root is not None:
            self.start_index()
        self.status_push.changed()

    def start(self) -> None:
        """After ``initialized``: load the model and index the workspace, both in the background."""
        self.main_loop = asyncio.get_running_loop()
        self.engine = Engine(self.settings, root=self.root, report=self.report)
        self.completions = CompletionService(
            self.engine, debounce_s=self.settings.completion.debounce_ms / 1000
        )
        self.actions = CodeActions(self.engine)
        self.engine.on_change = self.status_push.changed
        self.spawn(self.engine.start())
        if self.root is not None:
            self.start_index()
            self.spawn(register_watcher(self))
            self.spawn(self.rescans.periodically())

    def start_index(self) -> None:
        """(Re)build the workspace index in the background, with ``$/progress``."""
        assert self.root is not None and self.engine is not None
        if self.index is not None:
            self.index.close()
        self.index = IndexService(self.root, self.settings.index, report=self.report)
        self.engine.context = self.index.context
        self.engine.known_symbols = self.index.known_symbol
        self.spawn(self.build_index(self.index))

    async def build_index(self, index: IndexService) -> None:
        """Index with a progress report the client can show."""
        if not self.settings.index.enabled:
            return
        progress = await self.begin_progress("Apprentice: indexing")
        try:
            await index.build(self.status_push.tracking(progress.callback))
        finally:
            progress.end(f"{index.status().get('files', 0)} files indexed")
            self.status_push.changed()

    async def begin_progress(self, title: str) -> WorkProgress:
        """A ``$/progress`` handle, or a silent one for clients that do not show progress."""
        window = self.client_capabilities.window
        if window is None or not window.work_done_progress:
            return WorkProgress(self, None, title)
        self._progress_count += 1
        token = f"apprentice-{self._progress_count}"
        try:
            await self.work_done_progress.create_async(token)
        except Exception as error:  # the client refused: index anyway, silently
            logger.info("no progress token: %s", error)
            return WorkProgress(self, None, title)
        return WorkProgress(self, token, title)

    def shutdown_services(self) -> None:
        """Stop the model worker and the index thread."""
        self.rescans.close()
        for task in list(self._tasks):
            task.cancel()
        if self.engine is not None:
            self.engine.close()
        if self.index is not None:
            self.index.close()

    # -- completions ---------------------------------------------------------------------

    def warm_ahead(self, uri: str, position: types.Position | None) -> None:
        """Warm the prompt for a place the user is looking at (the end of the document when
        the cursor is not known), in the background; a keystroke's request wins."""
        doc = self.document(uri)
        if self.engine is None or doc is None or self.refused(doc.uri):
            return
        if convert.document_language(doc) not in self.settings.languages:
            return
        if position is None:
            position = doc.client_position_at_offset(len(doc.source))
        place = (uris.document_key(doc.uri), doc.version, position.line)
        if place == self._warmed_at:
            return  # the same line of the same text: nothing new to evaluate
        self._warmed_at = place
        try:
            cursor = convert.cursor_at(doc, position, self.root)
        except convert.PositionError as error:
            logger.debug("not warming: %s", error)
            return
        self.spawn(self.engine.warm(cursor))

    async def suggest(
        self, doc: TextDocument, position: types.Position, *, invoked: bool = False
    ) -> Suggestion | None:
        """The verified suggestion at a position of a document, or None."""
        if self.completions is None or self.engine is None or self.refused(doc.uri):
            return None
        try:
            cursor = convert.cursor_at(doc, position, self.root)
        except convert.PositionError as error:
            logger.info("no completion: %s", error)
            return None
        if cursor.language not in self.settings.languages:
            return None
        if self.index is not None:
            self.index.user_active()
        version = doc.version or 0

        def is_current(asked: int) -> bool:
            now = self.document(doc.uri)
            return now is not None and (now.version or 0) == asked

        key = uris.document_key(doc.uri)
        suggestion = await self.completions.suggest(
            key, version, cursor, is_current, invoked=invoked
        )
        self.status_push.changed()  # a suggestion shown: its latency
        return suggestion

    def status(self) -> dict[str, object]:
        """What ``apprentice.status`` answers."""
        engine = self.engine
        model: dict[str, object] = {"state": "idle"}
        if engine is not None:
            s = engine.status
            model = {
                "state": s.state,
                "name": s.name,
                "architecture": s.architecture,
                "error": s.error,
                "load_seconds": round(s.load_seconds, 2) if s.load_seconds else None,
                # name, version, signer, verified... of a team checkpoint (None: not one)
                "checkpoint": s.checkpoint or None,
                "refused": s.refused,
            }
        result: dict[str, object] = {
            "server": SERVER_VERSION,
            "model": model,
            "backend": engine.describe_backend() if engine is not None else None,
            "index": self.index.status() if self.index is not None else {"state": "off"},
            "settings": settings_as_json(self.settings),
        }
        if self.completions is not None:
            result.update(self.completions.stats.as_json())
        if engine is not None:
            result["warmups"] = dict(engine.warm_stats)
            result["snapshots"] = dict(engine.snapshots)
        result["quarantined"] = self._quarantined()
        return result

    def _quarantined(self) -> list[str]:
        """Files skipped after crashing the parser or the model worker three times."""
        found = set(self.engine.quarantine.quarantined()) if self.engine is not None else set()
        index = self.index.index if self.index is not None else None
        if index is not None:
            found.update(index.quarantine.quarantined())
        return sorted(found)


def _root_of(params: types.InitializeParams) -> Path | None:
    folders = params.workspace_folders or []
    uri = folders[0].uri if folders else params.root_uri
    if uri:
        path = uris.path_of(uri)
        return path.resolve() if path else None
    if params.root_path:
        return Path(params.root_path).resolve()
    return None


class _ClientGone(logging.Filter):
    """Drops pygls's traceback per message written after the client closed the pipe."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, BrokenPipeError | ConnectionResetError)


def build_server() -> ApprenticeServer:
    """The server with every handler registered."""
    server = ApprenticeServer()
    logging.getLogger("pygls.protocol.json_rpc").addFilter(_ClientGone())

    @server.feature(types.INITIALIZE)
    def initialize(ls: ApprenticeServer, params: types.InitializeParams) -> None:
        ls.root = _root_of(params)
        ls.configure(params.initialization_options, initial=True)
        logger.info("workspace %s", ls.root or "(none)")

    @server.feature(types.INITIALIZED)
    def initialized(ls: ApprenticeServer, params: types.InitializedParams) -> None:
        ls.start()

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: ApprenticeServer, params: None) -> None:
        ls.shutdown_services()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(
        ls: ApprenticeServer, params: types.DidChangeConfigurationParams
    ) -> None:
        ls.configure(params.settings, initial=False)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: ApprenticeServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.warm_ahead(params.text_document.uri, None)

    @server.feature(CURSOR)
    def cursor_rests(ls: ApprenticeServer, params: Any) -> None:
        where = convert.cursor_notification(params)
        if where is not None:
            ls.warm_ahead(*where)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: ApprenticeServer, params: types.DidCloseTextDocumentParams) -> None:
        if ls.completions is not None:
            ls.completions.forget(uris.document_key(params.text_document.uri))

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched_files(
        ls: ApprenticeServer, params: types.DidChangeWatchedFilesParams
    ) -> None:
        ls.rescans.changed(len(params.changes))

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    async def did_save(ls: ApprenticeServer, params: types.DidSaveTextDocumentParams) -> None:
        if ls.index is None or ls.root is None:
            return
        rel = uris.relative_path(params.text_document.uri, ls.root)
        if rel is None:
            return  # not a file of the workspace
        doc = ls.document(params.text_document.uri)
        if ls.refused(params.text_document.uri):
            doc = None  # out of sync: the file on disk is what was saved
        text = params.text if params.text is not None else (doc.source if doc else None)
        await ls.index.update_file(rel, text)

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: ApprenticeServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        doc = ls.document(params.text_document.uri)
        invoked = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
        if doc is None:
            return types.InlineCompletionList(items=[])
        suggestion = await ls.suggest(doc, params.position, invoked=invoked)
        if suggestion is None:
            return types.InlineCompletionList(items=[])
        return convert.inline_items(suggestion.text, params.position, suggestion.replaced)

    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION,
        types.CompletionOptions(trigger_characters=[".", "(", " "], resolve_provider=False),
    )
    async def completion(
        ls: ApprenticeServer, params: types.CompletionParams
    ) -> types.CompletionList:
        doc = ls.document(params.text_document.uri)
        context = params.context
        invoked = (
            context is not None and context.trigger_kind == types.CompletionTriggerKind.Invoked
        )
        if doc is None:
            return types.CompletionList(is_incomplete=True, items=[])
        suggestion = await ls.suggest(doc, params.position, invoked=invoked)
        if suggestion is None:
            return types.CompletionList(is_incomplete=True, items=[])
        typed = convert.word_before(doc, convert.offset_of(doc, params.position))
        return convert.completion_items(
            suggestion.text, params.position, typed, suggestion.replaced
        )

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(
            code_action_kinds=[types.CodeActionKind.QuickFix], resolve_provider=True
        ),
    )
    async def code_action(
        ls: ApprenticeServer, params: types.CodeActionParams
    ) -> list[types.CodeAction]:
        doc = ls.document(params.text_document.uri)
        if ls.actions is None or doc is None or convert.document_language(doc) != "python":
            return []
        if ls.refused(doc.uri):
            return []
        return await ls.actions.list(doc, params.range)

    @server.feature(types.CODE_ACTION_RESOLVE)
    async def code_action_resolve(
        ls: ApprenticeServer, action: types.CodeAction
    ) -> types.CodeAction:
        uri = convert.json_object(action.data).get("uri")
        if ls.actions is None or (isinstance(uri, str) and ls.refused(uri)):
            return action
        return await ls.actions.resolve(ls.workspace, action)

    @server.command(STATUS)
    def status(ls: ApprenticeServer, *args: Any) -> dict[str, object]:
        return ls.status()

    @server.command(REINDEX)
    async def reindex(ls: ApprenticeServer, *args: Any) -> dict[str, object]:
        if ls.root is None or ls.engine is None:
            return {"state": "off", "reason": "no workspace folder"}
        if ls.index is None or not ls.settings.index.enabled:
            return {"state": "off", "reason": "indexing is disabled (apprentice.index.enabled)"}
        await ls.build_index(ls.index)
        return ls.index.status()

    return server
