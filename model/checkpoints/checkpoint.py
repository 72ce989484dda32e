"""Resolve what ``--model`` / ``model.path`` names into verified files to load.

``resolve_model`` is the one entry point for callers (server, CLI, evaluation): a checkpoint
directory, an installed ``NAME[@VERSION]``, a bare GGUF (loaded, logged as unverified),
``base`` (the embedded model alone), ``student`` (the student shipped in ``model/student``:
its adapter on the embedded model) or nothing (the default: whichever of the two
``apprentice eval`` showed is better). The checks themselves live in
``model.checkpoints.verification``.
"""

from __future__ import annotations

import contextlib
import logging
import os
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
from model.checkpoints.verification import (
    OPEN_POLICY,
    HashCache,
    Policy,
    Report,
    check_adapter_layout,
    default_hash_cache,
    read_header,
    verify_checkpoint,
)
from model.runtime.api import ModelError, ModelNotFoundError
from model.runtime.default_model import embedded_sha256, ensure_default_model
from model.runtime.fim import FimTemplate, family_template
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
    "default_hash_cache",
    "describe_checkpoint",
    "load_checkpoint",
    "resolve_model",
    "verify_checkpoint",
]

logger = logging.getLogger(__name__)

# The student that ships with the package (``make student``): an adapter and its manifest,
# bound to the embedded model, which the checkpoint leaves out.
SHIPPED_STUDENT = Path(__file__).resolve().parents[1] / "student"
BASE_SPEC = "base"
STUDENT_SPEC = "student"
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
        """JSON-ready: name, version, signer, verified (``apprentice.status``, ``model info``)."""
        manifest = self.manifest
        signature = self.signature
        return {
            "source": self.source,
            "path": str(self.directory or self.gguf),
            "name": manifest.name if manifest else None,
            "version": manifest.version if manifest else None,
            "digest": self.digest or None,
            "verified": self.verified,
            "signer": signature.signer if signature else None,
            "key_id": signature.key_id if signature else None,
            "trusted": signature.trusted if signature else False,
            "adapters": [{"path": str(a.path), "scale": a.scale} for a in self.loras],
            "fim": (self.fim.family if self.fim else "none") if self.fim_declared else "auto",
        }


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
    spec: str | None,
    *,
    lora: str | None = None,
    policy: Policy = OPEN_POLICY,
    cache: HashCache | None = None,
    data_dir: Path | None = None,
) -> ResolvedModel:
    """What ``spec`` names, verified: a checkpoint dir, ``NAME[@VERSION]``, a GGUF, or None.

    ``lora`` adds an adapter by path (scale 1, unsigned: refused when signatures are
    required). Raises CheckpointError for a checkpoint that fails a check,
    ModelNotFoundError for nothing by that name.
    """
    resolved = _resolve(spec, policy, cache, data_dir)
    if lora:
        resolved = replace(
            resolved, loras=(*resolved.loras, _loose_adapter(lora, resolved, policy, cache))
        )
    return resolved


def _loose_adapter(
    lora: str, resolved: ResolvedModel, policy: Policy, cache: HashCache | None
) -> Lora:
    """An adapter given by path (``model.lora``), outside any checkpoint and its signature."""
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
    spec: str | None, policy: Policy, cache: HashCache | None, data_dir: Path | None
) -> ResolvedModel:
    if not spec:
        spec = STUDENT_SPEC if DEFAULT_IS_STUDENT else BASE_SPEC
    if spec == BASE_SPEC:
        return ResolvedModel(
            gguf=ensure_default_model(),
            verified=True,
            source="embedded",
            gguf_sha256=embedded_sha256() or "",
        )
    if spec == STUDENT_SPEC:
        if not (SHIPPED_STUDENT / MANIFEST_NAME).is_file():
            raise ModelNotFoundError(
                f"no student ships with this installation ({SHIPPED_STUDENT} has no "
                f"{MANIFEST_NAME}; `make student` trains one)"
            )
        return load_checkpoint(SHIPPED_STUDENT, policy, cache=cache)
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_checkpoint(path, policy, cache=cache)
    if path.exists() or not looks_like_name(spec):
        if not path.exists():
            raise ModelNotFoundError(f"model file not found: {path}")
        if policy.require_signature:
            raise CheckpointError(
                path, "signature", "a bare GGUF carries no signature and one is required"
            )
        validate_gguf(path)
        logger.warning("%s is a bare GGUF: loaded unverified (no checkpoint manifest)", path)
        return ResolvedModel(gguf=path, source="gguf")
    from model.checkpoints.install import find_installed

    try:
        directory = find_installed(spec, data_dir)
    except ValueError as error:  # not NAME[@VERSION] either
        raise ModelNotFoundError(f"model file not found: {path} ({error})") from None
    return load_checkpoint(directory, policy, cache=cache)


def looks_like_name(spec: str) -> bool:
    """Whether ``spec`` could be an installed ``NAME[@VERSION]`` rather than a file path."""
    return "/" not in spec and os.sep not in spec and not spec.endswith(".gguf")


def describe_checkpoint(directory: Path, policy: Policy = OPEN_POLICY) -> dict[str, object]:
    """``apprentice model info`` of a checkpoint: its identity, and whether it verifies.

    A checkpoint that fails a check is still described (``verified`` false, ``problem``);
    only an unreadable manifest raises.
    """
    from model.runtime.gguf import describe

    directory = Path(directory).expanduser()
    manifest, raw = load_manifest(directory)
    problem: str | None = None
    signature: Signature | None = None
    base_path = directory / manifest.base.file
    try:
        report = verify_checkpoint(directory, policy)
        signature, base_path = report.signature, report.base_path
    except CheckpointError as error:
        problem = str(error)
        with contextlib.suppress(CheckpointError):
            signature = check_signature(directory, raw, policy.trusted)
    base: dict[str, object] | str
    try:
        base = describe(read_gguf(base_path))
    except ModelError as error:
        base = str(error)
    return {
        "path": str(directory),
        "name": manifest.name,
        "version": manifest.version,
        "description": manifest.description,
        "digest": manifest_digest(raw),
        "verified": problem is None,
        "problem": problem,
        "signer": signature.signer if signature else None,
        "key_id": signature.key_id if signature else None,
        "trusted": bool(signature and signature.trusted),
        "base": base,
        "adapters": [{"file": a.file, "scale": a.scale} for a in manifest.adapters],
        "fim": manifest.fim.template,
        "stop": list(manifest.stop),
        "context_length": manifest.context_length,
        "licence": manifest.licence,
        "embedding_model": manifest.embedding_model,
        "min_apprentice": manifest.min_apprentice,
        "provenance": _json_safe(dict(manifest.provenance)),
    }


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
