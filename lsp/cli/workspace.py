"""``apprentice complete | index | search | check | serve``: the commands on a workspace.

Heavy imports (llama.cpp, pygls, the index) happen inside each command.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsp.cli.common import (
    LOG_FORMAT,
    add_backend_options,
    known_symbols,
    open_retriever,
    print_json,
    say,
    workspace_root_of,
)

if TYPE_CHECKING:
    from indexer.retrieval import Retriever
    from lint_bridge.names import KnownSymbols
    from lsp.core.settings import ServerSettings

logger = logging.getLogger(__name__)


def add_commands(commands: Any, model_commands: Any) -> None:
    """The parsers of the workspace commands (``model_commands`` gets none)."""
    complete = commands.add_parser("complete", help="one completion at a position")
    complete.add_argument("file")
    complete.add_argument("--line", type=int, required=True, help="0-based line")
    complete.add_argument("--col", type=int, required=True, help="0-based column")
    complete.add_argument(
        "--encoding",
        default="utf-16",
        choices=["utf-16", "utf-8", "utf-32"],
        help="unit of --col, as negotiated in LSP (default utf-16)",
    )
    # Every option below left out means the server's setting (lsp.core.settings): the
    # command shows what the editor would, with one set of defaults.
    complete.add_argument(
        "--max-tokens",
        type=int,
        help="tokens a single-line suggestion may take (default: the server's "
        "completion.maxTokens)",
    )
    complete.add_argument(
        "--timeout",
        type=float,
        help="seconds the completion may take, each remote request included (default: the "
        "server's completion.timeoutMs)",
    )
    complete.add_argument(
        "--fim-template",
        help="FIM family to force (qwen2.5-coder, starcoder2, ...) or 'none' (default: the "
        "server's completion.fimTemplate, chosen from the model)",
    )
    complete.add_argument("--json", action="store_true", help="print one JSON object")
    complete.add_argument(
        "--candidates",
        type=int,
        help="candidates to try until one verifies (default: the server's completion.candidates)",
    )
    complete.add_argument("--no-verify", action="store_true", help="show unverified text")
    complete.add_argument(
        "--lexical",
        action="store_true",
        help="lexical and symbol context only, no embedding model loaded (default: semantic "
        "too where the index has embeddings, as the server)",
    )
    complete.add_argument("--index-dir", help="where indexes live (default: the user cache)")
    add_backend_options(complete)
    complete.set_defaults(handler=cmd_complete)

    index = commands.add_parser("index", help="index a repository (chunks, symbols, vectors)")
    index.add_argument("path", nargs="?", default=".")
    index.add_argument("--json", action="store_true")
    index.add_argument("--no-embed", action="store_true", help="skip the embedding stage")
    index.add_argument("--index-dir", help="where indexes live (default: the user cache)")
    index.add_argument("--embedder", default="default", help="embedder to use (default: MiniLM)")
    index.set_defaults(handler=cmd_index)

    search = commands.add_parser("search", help="search an indexed repository")
    search.add_argument("terms", nargs="+", metavar="[PATH] QUERY")
    search.add_argument("-k", type=int, default=10, help="number of hits (default 10)")
    search.add_argument("--json", action="store_true")
    search.add_argument("--lexical", action="store_true", help="lexical ranking only (no model)")
    search.add_argument("--index-dir", help="where indexes live (default: the user cache)")
    search.add_argument(
        "--embedder", default="existing", help="default: the one the index was built with"
    )
    search.set_defaults(handler=cmd_search)

    check = commands.add_parser("check", help="verify one candidate insertion")
    check.add_argument("file")
    check.add_argument("--line", type=int, required=True, help="0-based line")
    check.add_argument("--col", type=int, required=True, help="0-based column")
    check.add_argument("--text", required=True, help="the candidate text to insert")
    check.add_argument("--encoding", default="utf-16", choices=["utf-16", "utf-8", "utf-32"])
    check.add_argument("--json", action="store_true")
    check.add_argument("--index-dir", help="where indexes live (default: the user cache)")
    check.set_defaults(handler=cmd_check)

    serve = commands.add_parser("serve", help="the language server (LSP over stdio)")
    serve.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP instead of stdio")
    serve.add_argument("--log-file", help="also write the log here (it always goes to stderr)")
    serve.set_defaults(handler=cmd_serve)


def complete_settings(args: argparse.Namespace) -> ServerSettings:
    """The server's settings with the flags given on the command line laid over them.

    The flags go through the settings' own parser, so a value the editor's settings would
    refuse (``--candidates 0``) is refused here too (ValueError: a one-line error). Beneath
    them lies the user's settings file, as beneath the editor's (``lsp.core.user_settings``).
    """
    from lsp.core.settings import CompletionSettings
    from lsp.core.user_settings import layered, load_user_settings

    model = {
        "path": getattr(args, "model", None),
        "lora": getattr(args, "lora", None),
        "remoteUrl": getattr(args, "remote", None),
        "remoteModel": getattr(args, "remote_model", None),
        "contextLength": getattr(args, "n_ctx", None),
        "threads": getattr(args, "n_threads", None),
        "gpuLayers": getattr(args, "n_gpu_layers", None),
    }
    completion: dict[str, object] = {
        "candidates": args.candidates,
        "fimTemplate": args.fim_template,
        "timeoutMs": None if args.timeout is None else max(1, round(args.timeout * 1000)),
    }
    if args.max_tokens is not None:
        completion["maxTokens"] = args.max_tokens
        # A multi-line suggestion never gets fewer tokens than a single line.
        multiline = CompletionSettings().max_tokens_multiline
        completion["maxTokensMultiline"] = max(multiline, args.max_tokens)
    raw: dict[str, object] = {
        "model": {key: value for key, value in model.items() if value is not None},
        "completion": {key: value for key, value in completion.items() if value is not None},
    }
    if args.no_verify:
        raw["verify"] = {"syntax": False, "ruff": False, "symbols": False}
    settings, problems = layered(raw, load_user_settings())
    if problems:
        raise ValueError("; ".join(problems))
    return settings


def _symbols_of(retriever: Retriever) -> KnownSymbols:
    """The index's symbol table as the verifier asks it."""
    return lambda dotted: retriever.lookup(dotted).found


def cmd_complete(args: argparse.Namespace) -> int:
    """``apprentice complete FILE --line L --col C``: one suggestion through the pipeline,
    built as the server builds it (``lsp.core.factory``) and asked for explicitly, as an
    editor's "suggest now" asks the server."""
    from indexer.languages import language_for
    from lsp.core.factory import backend_settings, build_pipeline
    from lsp.core.pipeline import ContextSource, Cursor, index_context
    from lsp.core.source import offset_at, read_source
    from model.factory import create_backend

    path = Path(args.file)
    text = read_source(path)
    offset = offset_at(text, args.line, args.col, args.encoding)
    settings = complete_settings(args)
    root = workspace_root_of(path)
    rel_path = path.resolve().relative_to(root).as_posix()
    retriever = open_retriever(root, args)
    context: ContextSource | None = None
    known: KnownSymbols | None = None
    if retriever is not None:
        # As the server: semantic retrieval too where the index has embeddings.
        semantic = not args.lexical and retriever.index.has_vectors()
        context = index_context(retriever, semantic=semantic)
        known = _symbols_of(retriever)
    backend = create_backend(backend_settings(settings, one_off=True))
    try:
        pipeline = build_pipeline(
            settings, backend, root=root, context=context, known_symbols=known, one_off=True
        )
        cursor = Cursor(
            path=rel_path,
            language=language_for(path),
            text=text,
            offset=offset,
            repo_name=root.name,
            abs_path=path.resolve(),
        )
        result = pipeline.complete(cursor, budget=False)
    finally:
        backend.close()
    if args.json:
        print_json(result.as_json())
    elif result.text:
        sys.stdout.write(result.text.lstrip("\n") + "\n")
    else:
        say("no suggestion")
    return 0


def index_settings(args: argparse.Namespace, *, foreground: bool = False) -> object:
    from indexer.index import IndexSettings
    from model.runtime.hardware import physical_cores

    location = Path(args.index_dir).expanduser() if args.index_dir else None
    threads = physical_cores() if foreground else None
    return IndexSettings(location=location, embedder=args.embedder, embed_threads=threads)


def cmd_index(args: argparse.Namespace) -> int:
    """``apprentice index [PATH]``: the whole index, embeddings included, with progress."""
    from indexer.index import IndexSettings, RepositoryIndex
    from lsp.cli.progress import ProgressBar

    settings = index_settings(args, foreground=True)
    assert isinstance(settings, IndexSettings)
    bar = ProgressBar()
    started = time.monotonic()
    with RepositoryIndex(Path(args.path), settings) as index:
        report = index.update(progress=bar)
        if report.rebuilt_reason:
            say(f"apprentice: index rebuilt: {report.rebuilt_reason}")
        if not args.no_embed:
            report.embedded, _ = index.embed_pending(progress=bar)
        bar.close()
        report.seconds = time.monotonic() - started
    if args.json:
        print_json(report.as_json())
    else:
        say(
            f"indexed {report.files} files: {report.chunks} chunks, {report.symbols} symbols "
            f"({report.added} added, {report.changed} changed, {report.deleted} deleted); "
            f"{report.embedded} chunks embedded, {report.reused} reused, "
            f"in {report.seconds:.1f}s"
        )
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """``apprentice search [PATH] QUERY``: ranked chunks (lexical fused with semantic)."""
    from indexer.index import IndexSettings, RepositoryIndex

    if len(args.terms) == 1:
        path, query = ".", args.terms[0]
    elif len(args.terms) == 2:
        path, query = args.terms
    else:
        raise ValueError("usage: apprentice search [PATH] QUERY (quote a multi-word query)")
    settings = index_settings(args)
    assert isinstance(settings, IndexSettings)
    with RepositoryIndex(Path(path), settings) as index:
        if index.store.counts()["files"] == 0:
            raise ValueError(f"{path} has no index yet: run `apprentice index {path}` first")
        hits = index.search(query, args.k, semantic=not args.lexical)
    if args.json:
        print_json({"hits": [hit.as_json() for hit in hits]})
        return 0
    for rank, hit in enumerate(hits, start=1):
        chunk = hit.chunk
        sys.stdout.write(
            f"{rank:>2}. {chunk.path}:{chunk.start_line}-{chunk.end_line}  "
            f"{hit.score:.4f}  {chunk.symbol or chunk.kind}\n"
        )
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """``apprentice check FILE --line L --col C --text TEXT``: verify one candidate insertion."""
    from indexer.languages import language_for
    from lint_bridge.api import Document, Splice
    from lint_bridge.verify import Verifier
    from lsp.core.source import offset_at, read_source

    path = Path(args.file)
    text = read_source(path)
    offset = offset_at(text, args.line, args.col, args.encoding)
    root = workspace_root_of(path)
    known = known_symbols(root, args)
    verifier = Verifier(workspace_root=root, known_symbols=known)
    verdict = verifier.check_sync(
        Document(path=path.resolve(), text=text, language=language_for(path)),
        Splice(offset, offset, args.text),
        exhaustive=True,
    )
    if args.json:
        print_json(verdict.as_json())
        return 0
    sys.stdout.write(f"{verdict.verdict}\n")
    if verdict.verdict == "repair":
        sys.stdout.write(f"repaired text: {verdict.text!r}\n")
    for reason in verdict.reasons:
        sys.stdout.write(
            f"  {reason.line + 1}:{reason.column + 1} {reason.label}: {reason.message}\n"
        )
    if verdict.unchecked:
        sys.stdout.write(f"  (not checked: {', '.join(verdict.unchecked)})\n")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``apprentice serve``: the language server over stdio (or TCP)."""
    from lsp.server.language_server import build_server

    if args.log_file:
        handler = logging.FileHandler(args.log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logging.getLogger().addHandler(handler)
    if args.log_level is None:
        logging.getLogger().setLevel(logging.INFO)  # the settings' logLevel takes over later
    server = build_server()
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        if not port.isdigit():
            raise ValueError(f"--tcp wants HOST:PORT, got {args.tcp!r}")
        server.start_tcp(host or "127.0.0.1", int(port))
    else:
        server.start_io()
    return 0
