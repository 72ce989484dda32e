"""Keystroke-to-suggestion latency: a real file typed into the server through a real LSP client.

The file is typed as bench/traces/keystrokes.py describes (function bodies filled back in,
about 8 characters a second, pauses of 1.5-2 s at natural points). After each keystroke
the client sends ``didChange`` and an automatic ``textDocument/inlineCompletion`` request
and, as VS Code does, ``$/cancelRequest`` for the previous request when its answer has not
come yet. At each pause it notes whether a suggestion is on screen and how long after the
keystroke it came; the server's ``apprentice.status`` gives the token and request counts.

Figures, not assertions: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient

from bench.traces.keystrokes import Keystroke, Trace, agrees, build_trace
from lsp.evaluation.lsp_client import REQUEST_CANCELLED, item_text, serve, status, wait_ready
from lsp.evaluation.metrics import percentile

DEFAULT_TRACE = Path(__file__).resolve().parent / "traces/warehouse/warehouse/reorder.py"
TARGET_P50_MS = 300.0
TARGET_P95_MS = 800.0
CLIENT_NAME = "apprentice-typing-trace"
OUTCOMES = ("items", "empty", "cancelled", "error")  # what a request's answer was
SEEN = ("suggestion", "empty", "late", "cancelled", "error")  # what the typist saw at a pause


@dataclass
class Sent:
    """One inline-completion request and what became of it."""

    keystroke: int
    msg_id: int
    sent_at: float
    answered_at: float | None = None
    outcome: str = "pending"  # items | empty | cancelled | error | pending
    cancel_sent: bool = False
    text: str = ""

    @property
    def latency_ms(self) -> float | None:
        """Keystroke (its didChange) to answer, in milliseconds."""
        if self.answered_at is None:
            return None
        return (self.answered_at - self.sent_at) * 1000


@dataclass(frozen=True)
class Pause:
    """What the typist saw at the end of one pause."""

    keystroke: int
    seen: str  # suggestion | empty | late | cancelled | error
    latency_ms: float | None
    agrees: bool = False


def _delta(before: dict[str, Any], after: dict[str, Any], group: str, key: str) -> int:
    """How much a status counter grew during the replay (0 where the server lacks it)."""
    old = before.get(group, {}).get(key, 0) or 0
    new = after.get(group, {}).get(key, 0) or 0
    return int(new) - int(old)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def summarise(
    sent: list[Sent],
    pauses: list[Pause],
    status_before: dict[str, Any],
    status_after: dict[str, Any],
) -> dict[str, Any]:
    """The report: latency at pauses, readiness, cancellation and prefix reuse."""
    shown = [p.latency_ms for p in pauses if p.seen == "suggestion" and p.latency_ms is not None]
    # A cancelled request's answer times the cancellation, not a completion.
    answered = [
        ms for s in sent if s.outcome in ("items", "empty") and (ms := s.latency_ms) is not None
    ]
    outcomes = {kind: sum(s.outcome == kind for s in sent) for kind in OUTCOMES}
    prompt = _delta(status_before, status_after, "tokens", "prompt")
    evaluated = _delta(status_before, status_after, "tokens", "evaluated")
    seen = {kind: sum(p.seen == kind for p in pauses) for kind in SEEN}
    cancels = sum(s.cancel_sent for s in sent)
    server = {
        key: _delta(status_before, status_after, "requests", key)
        for key in ("total", "shown", "cancelled", "superseded", "stale", "cache_hits")
    }
    return {
        "pauses": len(pauses),
        "pauses_seen": seen,
        "suggestion_ms": {
            "p50": _ms(percentile(shown, 50)),
            "p95": _ms(percentile(shown, 95)),
            "p99": _ms(percentile(shown, 99)),
        },
        "targets_ms": {"p50": TARGET_P50_MS, "p95": TARGET_P95_MS},
        "acceptance_ready": round(seen["suggestion"] / len(pauses), 3) if pauses else None,
        "first_line_right": round(sum(p.agrees for p in pauses) / max(1, seen["suggestion"]), 3),
        "requests": len(sent),
        "answers": outcomes,
        "answer_ms": {"p50": _ms(percentile(answered, 50)), "p95": _ms(percentile(answered, 95))},
        "cancel_sent": cancels,
        "cancelled_fraction": round(cancels / len(sent), 3) if sent else None,
        "server_requests": server,
        "tokens": {"prompt": prompt, "evaluated": evaluated},
        "prefix_reuse_ratio": round(evaluated / prompt, 3) if prompt else None,
    }


def _items_text(result: Any) -> str:
    """The first non-blank suggestion in an inline-completion answer, or ''."""
    items = result.items if isinstance(result, lsp.InlineCompletionList) else (result or [])
    for item in items:
        text = item_text(item)
        if text.strip():
            return text
    return ""


class Replay:
    """Types a trace into one open document and records every request and pause."""

    def __init__(self, client: LanguageClient, uri: str, trace: Trace) -> None:
        self.client = client
        self.uri = uri
        self.trace = trace
        self.sent: list[Sent] = []
        self.pauses: list[Pause] = []
        self._ids = itertools.count(1_000_000)
        self.first_text = ""  # what the request before typing showed
        self.typing_from: float | None = None

    def _settle(self, sent: Sent, future: asyncio.Future[Any]) -> None:
        sent.answered_at = time.monotonic()
        if future.cancelled():
            sent.outcome = "error"
        elif (error := future.exception()) is not None:
            code = getattr(error, "code", None)
            sent.outcome = "cancelled" if code == REQUEST_CANCELLED else "error"
        else:
            sent.text = _items_text(future.result())
            sent.outcome = "items" if sent.text else "empty"

    async def warm_up(self, timeout_s: float) -> float:
        """One invoked request before typing starts; its cold prompt is timed, not counted."""
        key = self.trace.keystrokes[0]
        started = time.monotonic()
        params = lsp.InlineCompletionParams(
            text_document=lsp.TextDocumentIdentifier(uri=self.uri),
            position=lsp.Position(key.line, key.character),
            context=lsp.InlineCompletionContext(
                trigger_kind=lsp.InlineCompletionTriggerKind.Invoked
            ),
        )
        answer = await asyncio.wait_for(
            self.client.text_document_inline_completion_async(params), timeout_s
        )
        self.first_text = _items_text(answer)
        return (time.monotonic() - started) * 1000

    def first_typed_suggestion_ms(self) -> float | None:
        """From the first keystroke to the first suggestion shown while typing."""
        shown = [s.answered_at for s in self.sent if s.outcome == "items" and s.answered_at]
        if self.typing_from is None or not shown:
            return None
        return (min(shown) - self.typing_from) * 1000

    def _type(self, index: int, key: Keystroke, version: int) -> Sent:
        """didChange, then the inline-completion request an editor sends after it."""
        here = lsp.Position(key.line, key.character)
        sent = Sent(keystroke=index, msg_id=next(self._ids), sent_at=time.monotonic())
        self.client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                text_document=lsp.VersionedTextDocumentIdentifier(uri=self.uri, version=version),
                content_changes=[
                    lsp.TextDocumentContentChangePartial(range=lsp.Range(here, here), text=key.text)
                ],
            )
        )
        line, character = key.cursor
        params = lsp.InlineCompletionParams(
            text_document=lsp.TextDocumentIdentifier(uri=self.uri),
            position=lsp.Position(line, character),
            context=lsp.InlineCompletionContext(
                trigger_kind=lsp.InlineCompletionTriggerKind.Automatic
            ),
        )
        # Our own id, so that $/cancelRequest can name it: in pygls 2.1 cancelling the
        # client-side future sends nothing to the server.
        future = self.client.protocol.send_request_async(
            lsp.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=sent.msg_id
        )
        future.add_done_callback(lambda done: self._settle(sent, done))
        self.sent.append(sent)
        return sent

    def _judge(self, sent: Sent, key: Keystroke) -> Pause:
        if sent.outcome == "pending":
            return Pause(sent.keystroke, "late", None)
        if sent.outcome != "items":
            return Pause(sent.keystroke, sent.outcome, sent.latency_ms)
        right = agrees(sent.text, self.trace.target[key.target_offset :])
        return Pause(sent.keystroke, "suggestion", sent.latency_ms, right)

    async def run(self, settle_s: float = 30.0) -> None:
        """Replay every keystroke on its schedule, then wait for the last answers."""
        due = self.typing_from = time.monotonic()
        previous: Sent | None = None
        for index, key in enumerate(self.trace.keystrokes):
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if previous is not None and previous.outcome == "pending":
                self.client.cancel_request(lsp.CancelParams(id=previous.msg_id))
                previous.cancel_sent = True
            previous = self._type(index, key, version=index + 2)
            due += key.wait_s
            if key.pause:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                self.pauses.append(self._judge(previous, key))
        deadline = time.monotonic() + settle_s
        while any(s.outcome == "pending" for s in self.sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)


def _options(args: argparse.Namespace, index_dir: Path) -> dict[str, Any]:
    options: dict[str, Any] = {"index": {"location": str(index_dir)}}
    if not args.embeddings:
        options["index"]["embeddings"] = False
    if args.model:
        options["model"] = {"path": str(Path(args.model).resolve())}
    if args.debounce_ms is not None:
        options["completion"] = {"debounceMs": args.debounce_ms}
    if args.time_budget_ms is not None:
        options.setdefault("completion", {})["timeBudgetMs"] = args.time_budget_ms
    return options


def _workspace_of(trace: Path) -> Path:
    """The import root of the trace file: the folder above its outermost package."""
    folder = trace.resolve().parent
    while (folder / "__init__.py").exists():
        folder = folder.parent
    return folder


async def _session(
    args: argparse.Namespace, trace: Trace, root: Path, path: Path, log: Path
) -> tuple[Replay, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """One server from start to exit: initialize, open, wait until ready, replay."""
    command = shlex.split(args.server_cmd)
    options = _options(args, root.parent / "index")
    started = time.monotonic()
    async with serve(root, options, log, command=command, name=CLIENT_NAME) as client:
        uri = path.as_uri()
        document = lsp.TextDocumentItem(
            uri=uri, language_id="python", version=1, text=trace.initial
        )
        client.text_document_did_open(lsp.DidOpenTextDocumentParams(document))
        await wait_ready(client, args.ready_timeout)
        ready_s = time.monotonic() - started
        replay = Replay(client, uri, trace)
        # The first prompt is evaluated from scratch; time it apart so that one cold start
        # does not stand in for the typing latency (with few keystrokes it would be all of it).
        warm_ms = await replay.warm_up(args.ready_timeout) if args.warm_up else None
        _say(
            f"server ready after {ready_s:.1f} s, first answer {_cell(_ms(warm_ms), ' ms')}; "
            f"typing {len(trace.keystrokes)} keystrokes (about {trace.duration_s:.0f} s)"
        )
        before = await status(client)
        await replay.run()
        after = await status(client)
    start = {
        "ready_s": round(ready_s, 1),
        "warm_up_ms": _ms(warm_ms),
        # The first suggestion in the file: the request before typing, with its prompt cold.
        "first_suggestion": {"ms": _ms(warm_ms), "shown": bool(replay.first_text)},
        "first_typed_suggestion_ms": _ms(replay.first_typed_suggestion_ms()),
    }
    return replay, before, after, start


def _say(message: str) -> None:
    """Progress for the person watching: stderr, so ``--json`` keeps stdout clean."""
    print(message, file=sys.stderr, flush=True)


async def bench(args: argparse.Namespace, trace: Trace, log: Path) -> dict[str, Any]:
    """Copy the workspace, run one server session over the trace and summarise it."""
    source = Path(args.trace).resolve()
    workspace = Path(args.workspace).resolve() if args.workspace else _workspace_of(source)
    with tempfile.TemporaryDirectory(prefix="apprentice-trace-") as tmp:
        root = Path(tmp) / "workspace"
        shutil.copytree(workspace, root)
        path = root / source.relative_to(workspace)
        # The file on disk matches what the editor opens, as it would after saving the stubs.
        path.write_text(trace.initial)
        replay, before, after, start = await _session(args, trace, root, path, log)
    report = summarise(replay.sent, replay.pauses, before, after) | start
    report["run"] = {
        "trace": source.name,
        "keystrokes": len(trace.keystrokes),
        "cps": args.cps,
        "seed": args.seed,
        "debounce_ms": args.debounce_ms,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    report["model"] = after.get("model", {}).get("name")
    report["backend"] = after.get("backend")
    report["index"] = {k: v for k, v in after.get("index", {}).items() if k != "state"}
    return report


def _cell(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:g}{unit}"


def _first(first: dict[str, Any]) -> str:
    if first["ms"] is None:
        return "n/a"
    return f"{first['ms']:g} ms" + ("" if first["shown"] else " (nothing shown)")


def _counts(group: dict[str, int], keys: Sequence[str]) -> str:
    return " / ".join(str(group[key]) for key in keys)


def print_table(report: dict[str, Any], args: argparse.Namespace) -> None:
    """The figures beside the targets, as a Markdown table, and notes on the run."""
    ms, answer_ms, tokens = report["suggestion_ms"], report["answer_ms"], report["tokens"]
    server = ("cancelled", "superseded", "stale", "cache_hits")
    rows = [
        ("keystroke -> suggestion at pauses, p50", _cell(ms["p50"], " ms"), "<= 300 ms"),
        ("keystroke -> suggestion at pauses, p95", _cell(ms["p95"], " ms"), "<= 800 ms"),
        ("keystroke -> suggestion at pauses, p99", _cell(ms["p99"], " ms"), ""),
        ("first suggestion in the file (cold prompt, before typing, not counted)",
         _first(report["first_suggestion"]), ""),
        ("first suggestion while typing (from the first keystroke)",
         _cell(report["first_typed_suggestion_ms"], " ms"), ""),
        ("pauses", str(report["pauses"]), ""),
        ("acceptance-ready (suggestion shown at a pause)", _cell(report["acceptance_ready"]), ""),
        ("pauses: " + " / ".join(SEEN), _counts(report["pauses_seen"], SEEN), ""),
        ("suggestion's first line is what was typed next", _cell(report["first_line_right"]), ""),
        ("requests sent", str(report["requests"]), ""),
        ("answers: " + " / ".join(OUTCOMES), _counts(report["answers"], OUTCOMES), ""),
        ("fraction cancelled ($/cancelRequest sent)", _cell(report["cancelled_fraction"]), ""),
        ("keystroke -> any answer, p50 / p95", f"{_cell(answer_ms['p50'])} / "
         f"{_cell(answer_ms['p95'])} ms", ""),
        ("server: " + " / ".join(server), _counts(report["server_requests"], server), ""),
        ("prefix reuse: prompt tokens evaluated / total",
         f"{tokens['evaluated']} / {tokens['prompt']} = {_cell(report['prefix_reuse_ratio'])}",
         "lower is better"),
    ]  # fmt: skip
    print(f"\nbench/typing_trace.py: {Path(args.trace).name} at {args.cps:g} chars/s, seed "
          f"{args.seed}, model {report['model']} ({report['backend']})")  # fmt: skip
    print("| measure | value | target |\n|---|---|---|")
    for name, value, target in rows:
        print(f"| {name} | {value} | {target} |")
    print(
        f"Machine: {report['run']['machine']}, Python {platform.python_version()}; ready "
        f"{report['ready_s']} s after start. Latency counts the pauses whose suggestion came "
        "before the typist went on ('late': no answer by then). Shared machines are noisy."
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the options, replay the trace and print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--trace", default=str(DEFAULT_TRACE), help="the Python file to type")
    add("--workspace", help="folder copied as the workspace (default: the trace's import root)")
    add("--cps", type=float, default=8.0, help="characters a second (default 8)")
    add("--keystrokes", type=int, help="type only the first N keystrokes")
    add("--seed", type=int, default=0, help="seed of the typing rhythm's jitter")
    add("--pause", type=float, nargs=2, default=(1.5, 2.0), metavar=("MIN_S", "MAX_S"))
    add("--debounce-ms", type=int, help="the server's completion.debounceMs")
    add("--time-budget-ms", type=int, help="the server's completion.timeBudgetMs")
    add("--model", help="GGUF the server loads instead of the embedded default")
    add("--no-embeddings", dest="embeddings", action="store_false", help="lexical index only")
    add("--ready-timeout", type=float, default=600.0, help="seconds to wait for model and index")
    add("--no-warm-up", dest="warm_up", action="store_false", help="no request before typing")
    add("--server-cmd", default="", help="server command (default: python -m lsp.cli serve)")
    add("--server-log", help="keep the server's stderr in this file")
    add("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)

    source = Path(args.trace)
    if not source.is_file():
        parser.error(f"{source}: no such file")
    pause = (args.pause[0], args.pause[1])
    text = source.read_text()
    trace = build_trace(text, cps=args.cps, seed=args.seed, pause_s=pause, limit=args.keystrokes)
    if not trace.keystrokes:
        parser.error(f"{source}: no documented function bodies to type")
    with tempfile.TemporaryDirectory(prefix="apprentice-trace-log-") as tmp:
        log = Path(args.server_log) if args.server_log else Path(tmp) / "server.log"
        try:
            report = asyncio.run(bench(args, trace, log))
        except (RuntimeError, TimeoutError, OSError) as error:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            _say(f"typing_trace: {error}\n--- server stderr, last lines ---\n{tail}")
            return 2
    if args.json:
        print(json.dumps(report))
    else:
        print_table(report, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
