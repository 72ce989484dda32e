"""The ``apprentice`` command line: one entry point, one module per command group.

``workspace`` (complete, index, search, check, serve), ``evaluate`` (eval), ``checkpoint``
(model ...), ``train`` (distill, train) and ``doctor``. Each group's module imports only what
building its parser needs; heavy imports (llama.cpp, torch, pygls) happen inside the commands, so
``apprentice --help`` and light commands start at once. Exit status: 0 success, 1 usage
or input error (one line), 2 internal error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from lsp.cli import checkpoint, doctor, evaluate, train, workspace
from lsp.cli.common import LOG_FORMAT, Command, say

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)

# Each adds its parsers to ``commands`` (top level) and ``model_commands`` (``apprentice model``).
_GROUPS = (workspace, evaluate, checkpoint, train, doctor)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="apprentice", description="Local AI completions, verified before they are shown."
    )
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default WARNING (INFO for serve, whose logLevel setting then applies)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model = commands.add_parser("model", help="inspect, pack, verify and install models")
    model_commands = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    for group in _GROUPS:
        group.add_commands(commands, model_commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; map expected failures to exit status 1 with one line."""
    from indexer.records import IndexerError
    from lsp.core.source import InputError
    from model.runtime.api import ModelError

    # ONNX Runtime reports usage to its vendor unless told not to: nothing leaves this machine.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level or "WARNING"), stream=sys.stderr, format=LOG_FORMAT
    )
    handler: Command = args.handler
    try:
        return handler(args)
    except (InputError, ModelError, IndexerError, ValueError) as error:
        say(f"apprentice: {error}")
        return 1
    except KeyboardInterrupt:
        say("apprentice: interrupted")
        return 1
    except BrokenPipeError:
        # The reader went away (`apprentice model info | head`): nothing left to say to it.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:
        logger.debug("internal error", exc_info=True)
        say(f"apprentice: internal error: {type(error).__name__}: {error}")
        return 2
