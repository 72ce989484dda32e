"""What every ``apprentice`` command shares: output, the model options, the workspace.

Every ``--json`` output is one JSON object on stdout (``print_json``); messages go to
stderr (``say``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from indexer.retrieval import Retriever

Command = Callable[[argparse.Namespace], int]
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")


def say(message: str) -> None:
    sys.stderr.write(message + "\n")


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        help="a GGUF file, MODEL+ADAPTER.gguf, a checkpoint directory, an installed "
        "NAME[@VERSION], base, student or default (the default: the embedded Gemma 3 270M "
        "unless the shipped student is the default)",
    )
    group.add_argument("--lora", help="LoRA adapter (GGUF) applied on top of the model")
    group.add_argument("--remote", metavar="URL", help="OpenAI-compatible server instead")
    group.add_argument("--remote-model", help="model id to ask the remote server for")
    # Left out: the server's setting (lsp.cli.workspace.complete_settings lays them over it).
    group.add_argument("--n-ctx", type=int, help="context window (default: model.contextLength)")
    group.add_argument(
        "--n-threads", type=int, help="generation threads (default: as the server, model.threads)"
    )
    group.add_argument(
        "--n-gpu-layers", type=int, help="layers offloaded to the GPU (default: model.gpuLayers)"
    )


def workspace_root_of(path: Path) -> Path:
    """The repository root above ``path`` (the nearest ``.git``), else its directory."""
    start = path.resolve().parent
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return start


def open_retriever(root: Path, args: argparse.Namespace) -> Retriever | None:
    """The repository's index, when ``apprentice index`` has built one (never built here)."""
    from indexer.index import EXISTING, IndexSettings, RepositoryIndex, index_dir_for
    from indexer.records import IndexerError
    from indexer.retrieval import Retriever

    location = Path(args.index_dir).expanduser() if args.index_dir else None
    if not (index_dir_for(root, location) / "index.sqlite").exists():
        return None
    try:
        settings = IndexSettings(location=location, embedder=EXISTING)
        return Retriever(RepositoryIndex(root, settings))
    except IndexerError as error:
        logger.warning("working without the repository index: %s", error)
        return None


def known_symbols(root: Path, args: argparse.Namespace) -> Callable[[str], bool | None] | None:
    """The repository's symbol table as a lookup, when the repository has been indexed."""
    retriever = open_retriever(root, args)
    if retriever is None:
        return None
    return lambda dotted: retriever.lookup(dotted).found
