"""The ``apprentice`` command line: one entry point, one sub-command per job.

Heavy imports (llama.cpp, torch, pygls) happen inside the sub-commands that need
them, so ``apprentice --help`` and light commands start at once. Every ``--json``
output is one JSON object on stdout; messages go to stderr. Exit status: 0
success, 1 usage or input error (one line), 2 internal error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

Command = Callable[[argparse.Namespace], int]


def _add_backend_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", help="GGUF file to use instead of the embedded Gemma 3 270M")
    group.add_argument("--lora", help="LoRA adapter (GGUF) applied on top of the model")
    group.add_argument("--remote", metavar="URL", help="OpenAI-compatible server instead")
    group.add_argument("--remote-model", help="model id to ask the remote server for")
    group.add_argument("--n-ctx", type=int, default=4096, help="context window (default 4096)")
    group.add_argument("--n-threads", type=int, help="generation threads (default: physical cores)")
    group.add_argument("--n-gpu-layers", type=int, default=0, help="layers offloaded to the GPU")


def _backend_settings(args: argparse.Namespace) -> object:
    from model.factory import BackendSettings

    return BackendSettings(
        model_path=args.model,
        lora_path=args.lora,
        remote_url=args.remote,
        remote_model=args.remote_model,
        n_ctx=args.n_ctx,
        n_threads=args.n_threads,
        n_gpu_layers=args.n_gpu_layers,
    )


def cmd_complete(args: argparse.Namespace) -> int:
    """``apprentice complete FILE --line L --col C``: one suggestion through the pipeline."""
    from indexer.languages import language_for
    from lsp.pipeline import CompletionPipeline, Cursor, PipelineSettings
    from lsp.source import offset_at, read_source
    from model.factory import BackendSettings, create_backend

    path = Path(args.file)
    text = read_source(path)
    offset = offset_at(text, args.line, args.col, args.encoding)
    settings = _backend_settings(args)
    assert isinstance(settings, BackendSettings)
    backend = create_backend(settings)
    try:
        pipeline = CompletionPipeline(
            backend,
            PipelineSettings(
                max_tokens=args.max_tokens,
                max_tokens_multiline=max(args.max_tokens, 96),
                fim_template=args.fim_template,
                timeout_s=args.timeout,
            ),
        )
        cursor = Cursor(path=path.name, language=language_for(path), text=text, offset=offset)
        result = pipeline.complete(cursor)
    finally:
        backend.close()
    if args.json:
        _print_json(result.as_json())
    elif result.text:
        sys.stdout.write(result.text.lstrip("\n") + "\n")
    else:
        _say("no suggestion")
    return 0


def cmd_model_info(args: argparse.Namespace) -> int:
    """``apprentice model info [PATH]``: what a GGUF is, read without loading it."""
    from model.default_model import resolve_model_path
    from model.fim import all_markers
    from model.gguf import describe, read_gguf

    info = read_gguf(resolve_model_path(args.path), markers=all_markers())
    data = describe(info)
    if args.json:
        _print_json(data)
        return 0
    width = max(len(key) for key in data)
    for key, value in data.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        sys.stdout.write(f"{key.ljust(width)}  {value}\n")
    return 0


def cmd_model_verify(args: argparse.Namespace) -> int:
    """``apprentice model verify PATH --sha256 HEX``: refuse a file whose digest differs."""
    from model.default_model import verify_sha256
    from model.gguf import read_gguf

    path = Path(args.path).expanduser()
    read_gguf(path)
    verify_sha256(path, args.sha256)
    _say(f"{path}: sha256 ok, a readable GGUF")
    return 0


def _print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")


def _say(message: str) -> None:
    sys.stderr.write(message + "\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="apprentice", description="Local AI completions, verified before they are shown."
    )
    parser.add_argument(
        "--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    complete.add_argument("--max-tokens", type=int, default=64)
    complete.add_argument("--timeout", type=float, default=20.0, help="seconds (default 20)")
    complete.add_argument(
        "--fim-template", help="FIM family to force (qwen2.5-coder, starcoder2, ...) or 'none'"
    )
    complete.add_argument("--json", action="store_true", help="print one JSON object")
    _add_backend_options(complete)
    complete.set_defaults(handler=cmd_complete)

    model = commands.add_parser("model", help="inspect model files")
    model_commands = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    info = model_commands.add_parser("info", help="architecture, size, context, quantization, FIM")
    info.add_argument("path", nargs="?", help="GGUF file (default: the embedded model)")
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=cmd_model_info)
    verify = model_commands.add_parser("verify", help="check a GGUF against its sha256")
    verify.add_argument("path")
    verify.add_argument("--sha256", required=True, help="expected hex digest")
    verify.set_defaults(handler=cmd_model_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; map expected failures to exit status 1 with one line."""
    from lsp.source import InputError
    from model.api import ModelError

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Command = args.handler
    try:
        return handler(args)
    except (InputError, ModelError, ValueError) as error:
        _say(f"apprentice: {error}")
        return 1
    except KeyboardInterrupt:
        _say("apprentice: interrupted")
        return 1
    except Exception as error:
        logger.debug("internal error", exc_info=True)
        _say(f"apprentice: internal error: {type(error).__name__}: {error}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
