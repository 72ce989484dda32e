"""``apprentice model pack|verify|keygen|install|list|remove|info``: team checkpoints on the CLI.

Thin wrappers around ``model.checkpoints`` (``pack``, ``checkpoint``, ``signing`` and
``install``); every failure is one line and exit status 1 (``lsp.cli.main``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lsp.cli.common import print_json, say


def add_commands(commands: Any, model_commands: Any) -> None:
    """Register the checkpoint sub-commands of ``apprentice model``."""
    info = model_commands.add_parser(
        "info", help="what a GGUF or checkpoint is: architecture, size, FIM, name, signer"
    )
    info.add_argument(
        "path",
        nargs="?",
        metavar="MODEL",
        help="a GGUF file, MODEL+ADAPTER.gguf, a checkpoint directory, an installed "
        "NAME[@VERSION], base, student or default (the default)",
    )
    info.add_argument("--trust", action="append", default=[], metavar="PUBKEY")
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=cmd_info)

    verify = model_commands.add_parser(
        "verify", help="check a checkpoint (hashes, headers, adapters, FIM, signature) or a GGUF"
    )
    verify.add_argument("path", help="checkpoint directory, installed NAME[@VERSION], or a GGUF")
    verify.add_argument("--sha256", help="expected hex digest (for a bare GGUF file)")
    verify.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="PUBKEY",
        help="require a signature by this key (.pub file or key text; repeatable)",
    )
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(handler=cmd_verify)

    pack = model_commands.add_parser("pack", help="make a checkpoint directory from GGUF files")
    pack.add_argument("directory")
    pack.add_argument("--gguf", required=True, help="the base model (GGUF)")
    pack.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="ADAPTER.gguf[:SCALE]",
        help="LoRA adapter with its scale (default 1.0); repeatable",
    )
    pack.add_argument(
        "--peft",
        metavar="DIR",
        help="the same LoRA in PEFT's layout (adapter_config.json, adapter_model.safetensors), "
        "for vLLM's --lora-modules",
    )
    pack.add_argument("--name", required=True)
    pack.add_argument("--version", required=True)
    pack.add_argument(
        "--fim",
        help="none, a family (qwen2.5-coder, ...) or psm:PREFIX,SUFFIX[,MIDDLE] / spm:...; "
        "default: detected from the GGUF",
    )
    pack.add_argument("--fim-stop-token", action="append", default=[], metavar="TOKEN")
    pack.add_argument("--stop", action="append", default=[], help="stop sequence; repeatable")
    pack.add_argument("--context-length", type=int, help="default: the base's")
    pack.add_argument("--licence", default="")
    pack.add_argument("--embedding-model", default="", help="the embedding model of team indexes")
    pack.add_argument("--description", default="")
    pack.add_argument(
        "--provenance",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="free-form provenance (dataset_card=..., training_command=...); repeatable",
    )
    pack.add_argument("--sign", metavar="KEY", help="private key from `apprentice model keygen`")
    pack.add_argument("--signer", default="", help="who signs (shown to users)")
    pack.add_argument("--copy", action="store_true", help="copy files instead of hard-linking")
    pack.add_argument("--json", action="store_true")
    pack.set_defaults(handler=cmd_pack)

    keygen = model_commands.add_parser("keygen", help="a new ed25519 signing key pair")
    keygen.add_argument("path", help="private key file to write (PATH.pub gets the public key)")
    keygen.add_argument("--comment", default="", help="who the key belongs to")
    keygen.set_defaults(handler=cmd_keygen)

    install = model_commands.add_parser(
        "install", help="install a checkpoint from a directory or an http(s) mirror"
    )
    install.add_argument("source", help="checkpoint directory or URL")
    install.add_argument("--trust", action="append", default=[], metavar="PUBKEY")
    install.add_argument(
        "--require-signature", action="store_true", help="refuse unsigned checkpoints"
    )
    install.add_argument("--force", action="store_true", help="replace an installed copy")
    install.add_argument("--data-dir", help="where checkpoints live (default: user data dir)")
    install.add_argument("--json", action="store_true")
    install.set_defaults(handler=cmd_install)

    listing = model_commands.add_parser("list", help="installed checkpoints")
    listing.add_argument("--data-dir", help="where checkpoints live (default: user data dir)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_list)

    remove = model_commands.add_parser("remove", help="remove an installed checkpoint")
    remove.add_argument("spec", metavar="NAME[@VERSION]")
    remove.add_argument("--data-dir", help="where checkpoints live (default: user data dir)")
    remove.set_defaults(handler=cmd_remove)


def _policy(keys: list[str], require: bool = False) -> Any:
    from model.checkpoints.checkpoint import Policy

    return Policy.from_specs(keys, require)


def _data_dir(args: argparse.Namespace) -> Path | None:
    return Path(args.data_dir).expanduser() if getattr(args, "data_dir", None) else None


def _spec(text: str | None, where: str) -> Any:
    """The model ``text`` names (``model.checkpoints.spec``), as ``where`` takes it."""
    from dataclasses import replace

    from model.checkpoints.spec import INFO, parse_model_spec

    return parse_model_spec(text, allow=replace(INFO, where=where))


def _checkpoint_dir(spec: Any) -> Path | None:
    """The checkpoint directory ``spec`` names (``checkpoint_directory``), else None."""
    from model.checkpoints.checkpoint import checkpoint_directory

    directory: Path | None = None if spec.adapter else checkpoint_directory(spec)
    return directory


def cmd_info(args: argparse.Namespace) -> int:
    """``apprentice model info [MODEL]``: a GGUF's header; a checkpoint, or a model with
    adapters, as ``describe_model`` describes it (the base GGUF's header under ``base``)."""
    from model.checkpoints.checkpoint import describe_model, resolve_model
    from model.runtime.fim import all_markers
    from model.runtime.gguf import describe, read_gguf

    policy = _policy(args.trust)
    spec = _spec(args.path, "model info")
    directory = _checkpoint_dir(spec)
    if directory is not None:
        data = describe_model(directory, policy, header=True)
    elif spec.kind == "gguf" and not spec.adapter:  # the file's header, nothing to resolve
        data = describe(read_gguf(spec.path, markers=all_markers()))
    else:
        resolved = resolve_model(spec, policy=policy)
        if resolved.loras:
            data = describe_model(resolved, policy, header=True)
        else:
            data = describe(read_gguf(resolved.gguf, markers=all_markers()))
    if args.json:
        print_json(data)
        return 0
    _print_table(data)
    return 0


def _print_table(data: dict[str, Any]) -> None:
    width = max(len(key) for key in data)
    for key, value in data.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        elif isinstance(value, list):
            value = "; ".join(str(v) for v in value) or "-"
        sys.stdout.write(f"{key.ljust(width)}  {'-' if value is None else value}\n")


def cmd_verify(args: argparse.Namespace) -> int:
    """``apprentice model verify PATH``: every check of a checkpoint; a GGUF against --sha256."""
    from model.checkpoints.checkpoint import verify_checkpoint
    from model.runtime.default_model import verify_sha256
    from model.runtime.gguf import read_gguf

    spec = _spec(args.path, "model verify")
    directory = _checkpoint_dir(spec)
    if directory is None:
        if spec.adapter:
            raise ValueError("model verify checks one checkpoint or one GGUF, not MODEL+ADAPTER")
        path = spec.path or Path(args.path).expanduser()
        if not args.sha256:
            raise ValueError(
                f"{path} is not a checkpoint directory: pass --sha256 HEX to check a bare GGUF"
            )
        read_gguf(path)
        verify_sha256(path, args.sha256)
        if args.json:
            print_json({"path": str(path), "ok": True, "checks": ["GGUF header", "sha256"]})
        else:
            say(f"{path}: sha256 ok, a readable GGUF")
        return 0
    if args.sha256:
        raise ValueError("--sha256 is for a bare GGUF; a checkpoint carries its own digests")
    report = verify_checkpoint(directory, _policy(args.trust))
    signature = report.signature
    if args.json:
        print_json(
            {
                "path": str(directory),
                "ok": True,
                "name": report.manifest.name,
                "version": report.manifest.version,
                "digest": report.digest,
                "signer": signature.signer if signature else None,
                "key_id": signature.key_id if signature else None,
                "trusted": bool(signature and signature.trusted),
                "checks": list(report.checks),
            }
        )
        return 0
    signed = "unsigned"
    if signature is not None:
        trust = "trusted" if signature.trusted else "not checked against trusted keys"
        signed = f"signed by {signature.signer or '?'} (key {signature.key_id}, {trust})"
    say(f"{report.manifest.label}: ok ({', '.join(report.checks)}); {signed}")
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    """``apprentice model pack DIR --gguf BASE ...``: write a checkpoint and print its digest."""
    from model.checkpoints.pack import pack_checkpoint, parse_adapter_option

    provenance: dict[str, str] = {}
    for item in args.provenance:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--provenance wants KEY=VALUE, got {item!r}")
        provenance[key] = value
    packed = pack_checkpoint(
        args.directory,
        args.gguf,
        name=args.name,
        version=args.version,
        adapters=[parse_adapter_option(item) for item in args.lora],
        peft_adapter=args.peft,
        fim=args.fim,
        fim_stop_tokens=args.fim_stop_token,
        stop=args.stop,
        context_length=args.context_length,
        licence=args.licence,
        embedding_model=args.embedding_model,
        description=args.description,
        provenance=provenance,
        sign_key=args.sign,
        signer=args.signer,
        link=not args.copy,
    )
    if args.json:
        print_json(
            {
                "path": str(packed.directory),
                "name": packed.manifest.name,
                "version": packed.manifest.version,
                "digest": packed.digest,
                "signed": packed.signed,
                "fim": packed.manifest.fim.template,
            }
        )
    else:
        say(f"packed {packed.manifest.label} in {packed.directory}")
        sys.stdout.write(f"sha256:{packed.digest}\n")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    """``apprentice model keygen PATH``: a private key and PATH.pub."""
    from model.checkpoints.signing import generate_keypair

    try:
        public = generate_keypair(Path(args.path), args.comment)
    except OSError as exc:
        raise ValueError(f"cannot write {args.path}: {exc.strerror or exc}") from None
    say(f"private key: {args.path} (keep it secret); public key: {args.path}.pub")
    sys.stdout.write(public.line() + "\n")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    """``apprentice model install SRC``: verified, then made visible at once."""
    from lsp.cli.progress import ProgressBar
    from model.checkpoints.install import install

    # Each file's bytes, on a terminal only: a log of a script needs no download bar.
    progress = ProgressBar(unit="MB", scale=1e6) if sys.stderr.isatty() and not args.json else None
    result = install(
        args.source,
        policy=_policy(args.trust, args.require_signature),
        data_dir=_data_dir(args),
        force=args.force,
        progress=progress,
    )
    if progress is not None:
        progress.close()
    if args.json:
        print_json(
            {
                "name": result.manifest.name,
                "version": result.manifest.version,
                "path": str(result.path),
                "already_installed": result.already,
            }
        )
    elif result.already:
        say(f"{result.manifest.label} is already installed at {result.path}")
    else:
        say(f"installed {result.manifest.label} at {result.path}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """``apprentice model list``: installed checkpoints; broken ones say why."""
    from model.checkpoints.install import list_installed

    items = list_installed(_data_dir(args))
    if args.json:
        print_json({"checkpoints": [item.as_json() for item in items]})
        return 0
    if not items:
        say("no checkpoints installed")
    for item in items:
        state = f"BROKEN: {item.problem}" if item.problem else ("signed" if item.signed else "")
        sys.stdout.write(f"{item.name}@{item.version}  {item.path}  {state}".rstrip() + "\n")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    """``apprentice model remove NAME[@VERSION]``."""
    from model.checkpoints.install import remove_installed

    for item in remove_installed(args.spec, _data_dir(args)):
        say(f"removed {item.name}@{item.version}")
    return 0
