"""Resolve a model spec into verified files to load, and describe what was resolved.

``resolve_model`` is the one resolver for every caller (server, CLI, evaluation, training,
a distillation teacher). It takes what ``model.checkpoints.spec`` parsed: a checkpoint
directory, an installed ``NAME[@VERSION]``, a bare GGUF (loaded, logged as unverified),
``base`` (the embedded model alone), ``student`` (the student shipped in ``model/student``:
its adapter on the embedded model), the default (whichever of the two ``apprentice eval``
showed is better), each with loose adapters added. ``describe_model`` is the one
description of a model or a checkpoint. The checks themselves live in
``model.checkpoints.verification``.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from model.checkpoints.manifest import (
    MANIFEST_NAME,
    CheckpointError,
    Manifest,
    load_manifest,
    manifest_digest,
)
from model.checkpoints.signing import Signature, check_signature
from model.checkpoints.spec import SERVING, Context, ModelSpec, ModelSpecError, parse_model_spec
from model.checkpoints.verification import (
    OPEN_POLICY,
    HashCache,
    Policy,
    Report,
    check_adapter_layout,
    default_hash_cache,
    embedded_model,
    read_header,
    verify_checkpoint,
)
from model.runtime.api import ModelError, ModelNotFoundError
from model.runtime.fim import FimTemplate, all_markers, family_template
from model.runtime.gguf import read_gguf, validate_gguf

# Re-exported: callers need only this module.
__all__ = [
    "OPEN_POLICY",
    "CheckpointError",
    "HashCache",
    "Lora",
    "Policy",
    "Report",
    "ResolvedModel",
    "check_adapter_layout",
    "checkpoint_directory",
    "default_hash_cache",
    "describe_model",
    "load_checkpoint",
    "resolve_model",
    "verify_checkpoint",
]

logger = logging.getLogger(__name__)

# The student that ships with the package (``make student``): an adapter and its manifest,
# bound to the embedded model, which the checkpoint leaves out.
SHIPPED_STUDENT = Path(__file__).resolve().parents[1] / "student"
# The default is the shipped student only where it beats the base through the whole
# pipeline (README, "Quality"); otherwise the embedded base.
DEFAULT_IS_STUDENT = False


@dataclass(frozen=True)
class Lora:
    """A LoRA adapter to load, with the scale it is applied at."""

    path: Path
    scale: float = 1.0
    # The digest it had when resolved: every (re)load checks the file still has it.
    sha256: str = ""


@dataclass(frozen=True)
class ResolvedModel:
    """What to load and how to prompt it, with how far it was verified.

    ``fim_declared`` True means ``fim`` (None: prefix-only prompts) comes from a checkpoint
    and is used unless the user forces a template; False leaves the choice to the model's
    vocabulary, as for a bare GGUF.
    """

    gguf: Path
    loras: tuple[Lora, ...] = ()
    fim: FimTemplate | None = None
    fim_declared: bool = False
    stops: tuple[str, ...] = ()
    context_length: int = 0
    manifest: Manifest | None = None
    directory: Path | None = None
    digest: str = ""
    verified: bool = False
    signature: Signature | None = None
    source: str = "gguf"  # embedded, gguf or checkpoint
    # The base's digest when verified ("" for a bare GGUF, which is loaded unverified).
    gguf_sha256: str = ""

    def pins(self) -> tuple[tuple[Path, str], ...]:
        """(file, sha256) of everything verified here: checked again before every load."""
        files = [(self.gguf, self.gguf_sha256), *((a.path, a.sha256) for a in self.loras)]
        return tuple((path, digest) for path, digest in files if digest)

    def extra_markers(self) -> tuple[str, ...]:
        """Marker strings this model's prompts may use beyond the known families'."""
        if self.fim is None:
            return ()
        return (*self.fim.inserted_markers(), *self.fim.stop_tokens)

    def describe(self) -> dict[str, object]:
        """This model as ``describe_model`` describes it (``apprentice.status``)."""
        return describe_model(self)


def declared_template(manifest: Manifest) -> FimTemplate | None:
    """The FIM template a manifest declares, spelled with its markers (None: prefix-only)."""
    fim = manifest.fim
    if fim.template == "none" or fim.prefix is None or fim.suffix is None:
        return None
    stops = tuple(m.text for m in fim.stop_tokens)
    middle = fim.middle.text if fim.middle else None
    known = family_template(fim.template)
    if known is not None:
        return replace(
            known,
            prefix=fim.prefix.text,
            suffix=fim.suffix.text,
            middle=middle,
            stop_tokens=stops or known.stop_tokens,
            spaced=False,  # the manifest's markers are spelled as the vocabulary has them
        )
    order: Literal["psm", "spm"] = "spm" if fim.order == "spm" else "psm"
    return FimTemplate(
        family=f"{manifest.name}",
        prefix=fim.prefix.text,
        suffix=fim.suffix.text,
        middle=middle,
        order=order,
        stop_tokens=stops,
    )


# -- resolution -------------------------------------------------------------------------------


def resolve_model(
    spec: ModelSpec | str | None,
    *,
    lora: str | None = None,
    policy: Policy = OPEN_POLICY,
    cache: HashCache | None = None,
    data_dir: Path | None = None,
    allow: Context = SERVING,
) -> ResolvedModel:
    """The local model ``spec`` names (``model.checkpoints.spec``; text is parsed under
    ``allow``), verified.

    ``lora`` adds an adapter by path, as ``MODEL+ADAPTER`` does (scale 1, unsigned: refused
    when signatures are required). Raises CheckpointError for a checkpoint that fails a
    check, ModelNotFoundError for nothing by that name, ModelSpecError for a spec that names
    no local model.
    """
    if not isinstance(spec, ModelSpec):
        spec = parse_model_spec(spec, allow=allow)
    resolved = _resolve(spec, policy, cache, data_dir)
    for adapter in (spec.adapter, lora):
        if adapter:
            loose = _loose_adapter(adapter, resolved, policy, cache)
            resolved = replace(resolved, loras=(*resolved.loras, loose))
    return resolved


def _loose_adapter(
    lora: str, resolved: ResolvedModel, policy: Policy, cache: HashCache | None
) -> Lora:
    """An adapter given by path (``model.lora``, ``+ADAPTER``), outside any checkpoint."""
    path = Path(lora).expanduser()
    if policy.require_signature:
        raise CheckpointError(
            path,
            "signature",
            "an adapter given by path (model.lora) carries no signature and signatures are "
            "required: pack it into a checkpoint and sign it (apprentice model pack --sign)",
        )
    if not path.is_file():
        raise ModelNotFoundError(f"LoRA adapter not found: {path}")
    check_adapter_layout(read_header(path), read_header(resolved.gguf))
    logger.warning("LoRA adapter %s is loaded unverified (not part of a checkpoint)", path)
    # Pinned as it is now: a file swapped later is refused at the next (re)load.
    return Lora(path, sha256=(cache or default_hash_cache()).sha256(path))


def _resolve(
    spec: ModelSpec, policy: Policy, cache: HashCache | None, data_dir: Path | None
) -> ResolvedModel:
    kind = spec.kind
    if kind in ("default", "self"):
        kind = "student" if DEFAULT_IS_STUDENT else "base"
    if kind == "base":
        gguf, digest = embedded_model(cache)
        return ResolvedModel(gguf=gguf, verified=True, source="embedded", gguf_sha256=digest)
    if kind == "gguf" and spec.path is not None:
        path = spec.path
        if not path.exists():
            raise ModelNotFoundError(f"model file not found: {path}")
        if policy.require_signature:
            raise CheckpointError(
                path, "signature", "a bare GGUF carries no signature and one is required"
            )
        validate_gguf(path)
        logger.warning("%s is a bare GGUF: loaded unverified (no checkpoint manifest)", path)
        return ResolvedModel(gguf=path, source="gguf")
    directory = checkpoint_directory(replace(spec, kind=kind), data_dir)
    if directory is None:
        raise ModelSpecError(f"{spec.shown!r} names no model on this machine")
    return load_checkpoint(directory, policy, cache=cache)


def checkpoint_directory(spec: ModelSpec, data_dir: Path | None = None) -> Path | None:
    """The checkpoint directory ``spec`` names (``student``, a directory, an installed name,
    the default while that is the student; None for anything else), found, not verified."""
    if spec.kind == "student" or (spec.kind in ("default", "self") and DEFAULT_IS_STUDENT):
        if not (SHIPPED_STUDENT / MANIFEST_NAME).is_file():
            raise ModelNotFoundError(
                f"no student ships with this installation ({SHIPPED_STUDENT} has no "
                f"{MANIFEST_NAME}; `make student` trains one)"
            )
        return SHIPPED_STUDENT
    if spec.kind == "checkpoint":
        return spec.path
    if spec.kind == "installed":
        from model.checkpoints.install import find_installed

        return find_installed(spec.text, data_dir)
    return None


# -- description ------------------------------------------------------------------------------


def describe_model(
    model: ResolvedModel | Path, policy: Policy = OPEN_POLICY, *, header: bool = False
) -> dict[str, object]:
    """The one JSON-ready description of a model (``apprentice.status``, ``model info``).

    ``model`` is a resolved model, or a checkpoint directory: one that fails a check is
    still described (``verified`` false, ``problem`` says why); only an unreadable manifest
    raises. ``header`` adds the base GGUF's header under ``base``.
    """
    if isinstance(model, Path):
        directory = model.expanduser()
        try:
            model = load_checkpoint(directory, policy)
        except CheckpointError as error:
            return _broken(directory, policy, str(error), header)
    manifest, signature = model.manifest, model.signature
    home = model.directory
    return _description(
        source=model.source,
        path=home or model.gguf,
        manifest=manifest,
        digest=model.digest or None,
        problem=None,
        verified=model.verified,
        signature=signature,
        base=_header(model.gguf) if header else None,
        adapters=[{"file": _relative(a.path, home), "scale": a.scale} for a in model.loras],
        fim=manifest.fim.template if manifest else "auto",
        context_length=model.context_length or None,
    )


def _broken(directory: Path, policy: Policy, problem: str, header: bool) -> dict[str, object]:
    """A checkpoint that fails a check, described from its manifest."""
    manifest, raw = load_manifest(directory)
    signature: Signature | None = None
    with contextlib.suppress(CheckpointError):
        signature = check_signature(directory, raw, policy.trusted)
    return _description(
        source="checkpoint",
        path=directory,
        manifest=manifest,
        digest=manifest_digest(raw),
        problem=problem,
        verified=False,
        signature=signature,
        base=_header(directory / manifest.base.file) if header else None,
        adapters=[{"file": a.file, "scale": a.scale} for a in manifest.adapters],
        fim=manifest.fim.template,
        context_length=manifest.context_length,
    )


def _description(
    *,
    source: str,
    path: Path,
    manifest: Manifest | None,
    digest: str | None,
    problem: str | None,
    verified: bool,
    signature: Signature | None,
    base: dict[str, object] | str | None,
    adapters: list[dict[str, object]],
    fim: str,
    context_length: int | None,
) -> dict[str, object]:
    described: dict[str, object] = {
        "source": source,
        "path": str(path),
        "name": manifest.name if manifest else None,
        "version": manifest.version if manifest else None,
        "description": manifest.description if manifest else None,
        "digest": digest,
        "verified": verified,
        "problem": problem,
        "signer": signature.signer if signature else None,
        "key_id": signature.key_id if signature else None,
        "trusted": bool(signature and signature.trusted),
    }
    if base is not None:
        described["base"] = base
    return described | {
        "adapters": adapters,
        # The same LoRA in PEFT's layout, for a team's vLLM server (None: not carried).
        "peft": manifest.peft.directory if manifest and manifest.peft else None,
        "fim": fim,
        "stop": list(manifest.stop) if manifest else [],
        "context_length": context_length,
        "licence": manifest.licence if manifest else None,
        "embedding_model": manifest.embedding_model if manifest else None,
        "min_apprentice": manifest.min_apprentice if manifest else None,
        "provenance": _json_safe(dict(manifest.provenance)) if manifest else {},
    }


def _header(gguf: Path) -> dict[str, object] | str:
    """The GGUF's header as ``model info`` shows it, or why it cannot be read."""
    from model.runtime.gguf import describe

    try:
        return describe(read_gguf(gguf, markers=all_markers()))
    except ModelError as error:
        return str(error)


def _relative(path: Path, directory: Path | None) -> str:
    """An adapter's file as its checkpoint names it; a loose adapter by its whole path."""
    if directory is not None and path.parent == directory:
        return path.name
    return str(path)


def _json_safe(value: object) -> object:
    """TOML values as JSON can hold them (dates and times become ISO strings)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def load_checkpoint(
    directory: Path, policy: Policy = OPEN_POLICY, *, cache: HashCache | None = None
) -> ResolvedModel:
    """Verify the checkpoint in ``directory`` and describe how to load it."""
    report = verify_checkpoint(directory, policy, cache=cache)
    manifest = report.manifest
    logger.info(
        "checkpoint %s verified (%s)%s",
        manifest.label,
        ", ".join(report.checks),
        f", signed by {report.signature.signer or report.signature.key_id}"
        if report.signature
        else ", unsigned",
    )
    return ResolvedModel(
        gguf=report.base_path,
        loras=tuple(Lora(report.directory / a.file, a.scale, a.sha256) for a in manifest.adapters),
        fim=declared_template(manifest),
        fim_declared=True,
        stops=manifest.stop,
        context_length=manifest.context_length,
        manifest=manifest,
        directory=report.directory,
        digest=report.digest,
        verified=True,
        signature=report.signature,
        source="checkpoint",
        gguf_sha256=manifest.base.sha256,
    )
