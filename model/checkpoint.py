"""Verify a team checkpoint, and resolve what ``--model`` / ``model.path`` names into files to load.

``verify_checkpoint`` runs every check before llama.cpp sees a byte: the manifest (schema,
fields), the signature (and the trust policy), each file's size and sha256 (hashes cached by
size, mtime and inode, so a file is hashed once per content), the GGUF headers (through the
project's bounded reader), each adapter's binding, architecture and tensor layout against its
base, and the declared FIM tokens against the vocabulary. The first failure raises
CheckpointError naming the file and the check.

``resolve_model`` is the one entry point for callers (server, CLI, evaluation): a checkpoint
directory, an installed ``NAME[@VERSION]``, a bare GGUF (loaded, logged as unverified) or
nothing (the embedded model).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from model.api import ModelError, ModelNotFoundError
from model.default_model import default_cache_dir, ensure_default_model, sha256_file
from model.fim import FimTemplate, all_markers, family_template
from model.gguf import GgufInfo, read_gguf, validate_gguf
from model.manifest import (
    SIGNATURE_NAME,
    AdapterEntry,
    CheckpointError,
    FileEntry,
    FimSpec,
    Manifest,
    load_manifest,
    manifest_digest,
)
from model.signing import PublicKey, Signature, check_signature, parse_public_key

logger = logging.getLogger(__name__)

_LORA_A, _LORA_B = ".lora_a", ".lora_b"


@dataclass(frozen=True)
class Lora:
    """A LoRA adapter to load, with the scale it is applied at."""

    path: Path
    scale: float = 1.0


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


@dataclass(frozen=True)
class Policy:
    """Which signatures to require: ``trusted`` keys, and whether a trusted one is a must."""

    trusted: tuple[PublicKey, ...] = ()
    require_signature: bool = False

    @classmethod
    def from_specs(cls, keys: tuple[str, ...] | list[str], require: bool = False) -> Policy:
        """Keys given as ``.pub`` paths or key lines (ValueError for a bad one)."""
        return cls(tuple(parse_public_key(k) for k in keys), require)


OPEN_POLICY = Policy()  # signatures checked when present, none required


# -- hashing, once per file content ---------------------------------------------------------


class HashCache:
    """sha256 digests remembered by path, size, mtime, ctime and inode (on disk, shared)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_cache_dir().parent / "checkpoint-hashes.json"
        self._lock = threading.Lock()
        self._memory: dict[str, dict[str, Any]] | None = None
        self.hashed = 0  # files actually read (tests count them)

    def _records(self) -> dict[str, dict[str, Any]]:
        if self._memory is None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self._memory = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._memory = {}
        return self._memory

    def sha256(self, path: Path) -> str:
        """The file's digest: from the cache when nothing about it changed, else hashed."""
        key = str(path.resolve())
        st = path.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        with self._lock:
            record = self._records().get(key)
            if isinstance(record, dict) and record.get("stamp") == stamp:
                return str(record["sha256"])
        digest = sha256_file(path)
        with self._lock:
            self.hashed += 1
            self._records()[key] = {"stamp": stamp, "sha256": digest}
            self._save()
        return digest

    def prime(self, path: Path, digest: str) -> None:
        """Record a digest just checked elsewhere (a moved file keeps its inode and times)."""
        st = path.stat()
        with self._lock:
            stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
            self._records()[str(path.resolve())] = {"stamp": stamp, "sha256": digest}
            self._save()

    def _save(self) -> None:
        records = self._records()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(records), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:  # only an optimisation: the next load hashes again
            logger.warning("cannot write %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()


_DEFAULT_CACHE: HashCache | None = None


def default_hash_cache() -> HashCache:
    """The process-wide hash cache under the user cache directory."""
    global _DEFAULT_CACHE
    if _DEFAULT_CACHE is None or _DEFAULT_CACHE.path != HashCache().path:
        _DEFAULT_CACHE = HashCache()
    return _DEFAULT_CACHE


# -- verification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """A checkpoint that passed every check."""

    directory: Path
    manifest: Manifest
    digest: str
    signature: Signature | None
    base: GgufInfo
    checks: tuple[str, ...]


def verify_checkpoint(
    directory: Path, policy: Policy = OPEN_POLICY, *, cache: HashCache | None = None
) -> Report:
    """Run every check on the checkpoint in ``directory``; raise CheckpointError at the first."""
    directory = Path(directory).expanduser()
    manifest, raw = load_manifest(directory)
    checks = ["manifest"]
    signature = check_signature(directory, raw, policy.trusted)
    _apply_policy(directory, signature, policy)
    checks.append("signature" if signature else "unsigned")
    cache = cache or default_hash_cache()
    for entry in manifest.files():
        _check_file(directory, entry, cache)
    checks.append("files")
    base = _read_header(directory / manifest.base.file, manifest.fim)
    if manifest.architecture and base.architecture != manifest.architecture:
        raise CheckpointError(
            directory / manifest.base.file,
            "architecture",
            f"the base is {base.architecture!r}, the manifest says {manifest.architecture!r}",
        )
    checks.append("headers")
    for adapter in manifest.adapters:
        _check_adapter(directory, adapter, manifest.base, base)
    if manifest.adapters:
        checks.append("adapters")
    _check_fim(directory / manifest.base.file, manifest.fim, base)
    checks.append("fim")
    return Report(directory, manifest, manifest_digest(raw), signature, base, tuple(checks))


def _apply_policy(directory: Path, signature: Signature | None, policy: Policy) -> None:
    where = directory / SIGNATURE_NAME
    if not policy.require_signature and not policy.trusted:
        return
    if signature is None:
        raise CheckpointError(
            where, "signature", "the checkpoint is not signed and a trusted signature is required"
        )
    if not signature.trusted:
        who = f"{signature.signer} " if signature.signer else ""
        raise CheckpointError(
            where,
            "signature",
            f"signed by {who}(key {signature.key_id}), which is not among the trusted keys",
        )


def _check_file(directory: Path, entry: FileEntry, cache: HashCache) -> None:
    path = directory / entry.file
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CheckpointError(path, "presence", "the file is missing") from None
    except OSError as exc:
        raise CheckpointError(path, "presence", f"cannot read it: {exc.strerror}") from None
    if not path.is_file():
        raise CheckpointError(path, "presence", "not a regular file")
    if st.st_size != entry.size:
        hint = " (truncated?)" if st.st_size < entry.size else ""
        raise CheckpointError(
            path, "size", f"{st.st_size} bytes, the manifest says {entry.size}{hint}"
        )
    try:
        digest = cache.sha256(path)
    except OSError as exc:
        raise CheckpointError(path, "sha256", f"cannot read it: {exc.strerror}") from None
    if digest != entry.sha256:
        raise CheckpointError(
            path, "sha256", f"the digest is {digest[:16]}…, the manifest says {entry.sha256[:16]}…"
        )


def _read_header(path: Path, fim: FimSpec | None = None) -> GgufInfo:
    ids = [m.id for m in fim.markers()] if fim else []
    try:
        return read_gguf(path, markers=all_markers(), token_ids=ids)
    except ModelError as exc:
        raise CheckpointError(path, "GGUF header", str(exc).removeprefix(f"{path}: ")) from None


def _check_adapter(
    directory: Path, entry: AdapterEntry, base_entry: FileEntry, base: GgufInfo
) -> None:
    path = directory / entry.file
    if entry.base_sha256 != base_entry.sha256:
        raise CheckpointError(
            path,
            "base binding",
            f"the adapter is bound to base {entry.base_sha256[:16]}…, "
            f"this checkpoint's base is {base_entry.sha256[:16]}…",
        )
    info = _read_header(path)
    check_adapter_layout(info, base)


def check_adapter_layout(adapter: GgufInfo, base: GgufInfo) -> None:
    """Raise CheckpointError unless ``adapter`` is a LoRA llama.cpp can apply to ``base``.

    The same rules llama.cpp applies when it loads an adapter, checked from the headers:
    type, architecture, every target tensor present in the base, A and B shaped for it.
    """
    path = adapter.path
    kind = adapter.metadata.get("general.type")
    if kind != "adapter" or adapter.metadata.get("adapter.type") != "lora":
        raise CheckpointError(
            path, "adapter type", f"not a LoRA adapter GGUF (general.type={kind!r})"
        )
    if adapter.architecture != base.architecture:
        raise CheckpointError(
            path,
            "architecture",
            f"the adapter is for {adapter.architecture!r}, the base is {base.architecture!r}",
        )
    pairs: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, (dims, _) in adapter.tensors.items():
        for suffix in (_LORA_A, _LORA_B):
            if name.endswith(suffix):
                pairs.setdefault(name.removesuffix(suffix), {})[suffix] = dims
    if not pairs:
        raise CheckpointError(path, "tensor layout", "the adapter has no LoRA tensors")
    for target, halves in sorted(pairs.items()):
        if len(halves) != 2:
            raise CheckpointError(path, "tensor layout", f"{target} lacks its lora_a or lora_b")
        if target not in base.tensors:
            raise CheckpointError(
                path,
                "tensor layout",
                f"the base has no tensor {target} (an adapter for another model?)",
            )
        model, a, b = base.tensors[target][0], halves[_LORA_A], halves[_LORA_B]
        if len(model) < 2 or len(a) != 2 or len(b) != 2:
            raise CheckpointError(path, "tensor layout", f"{target} is not a matrix adapter")
        if target == "token_embd.weight":
            fits = model[0] == b[1] and model[1] == a[1]
        else:
            fits = model[0] == a[0] and model[1] == b[1] and a[1] == b[0]
        if not fits:
            raise CheckpointError(
                path,
                "tensor layout",
                f"{target}: A {list(a)} and B {list(b)} do not fit the base's {list(model[:2])} "
                "(an adapter for another model size?)",
            )


def _check_fim(path: Path, fim: FimSpec, base: GgufInfo) -> None:
    if fim.template == "none":
        return
    for marker in fim.markers():
        found = base.token_texts.get(marker.id)
        if found != marker.text:
            where = (
                f"id {marker.id} is {found!r}"
                if found is not None
                else (f"id {marker.id} is outside the {base.vocab_size}-token vocabulary")
            )
            raise CheckpointError(
                path, "FIM tokens", f"the marker {marker.text!r} is not in the vocabulary ({where})"
            )
    if fim.template != "custom" and family_template(fim.template) is None:
        raise CheckpointError(
            path, "FIM tokens", f"unknown FIM template {fim.template!r} (custom, none or a family)"
        )


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

    ``lora`` adds an adapter by path (scale 1, unverified). Raises CheckpointError for a
    checkpoint that fails a check, ModelNotFoundError for nothing by that name.
    """
    resolved = _resolve(spec, policy, cache, data_dir)
    if lora:
        path = Path(lora).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"LoRA adapter not found: {path}")
        check_adapter_layout(_read_header(path), _read_header(resolved.gguf))
        logger.warning("LoRA adapter %s is loaded unverified (not part of a checkpoint)", path)
        resolved = replace(resolved, loras=(*resolved.loras, Lora(path)))
    return resolved


def _resolve(
    spec: str | None, policy: Policy, cache: HashCache | None, data_dir: Path | None
) -> ResolvedModel:
    if not spec:
        return ResolvedModel(gguf=ensure_default_model(), verified=True, source="embedded")
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
    from model.install import find_installed

    return load_checkpoint(find_installed(spec, data_dir), policy, cache=cache)


def looks_like_name(spec: str) -> bool:
    """Whether ``spec`` could be an installed ``NAME[@VERSION]`` rather than a file path."""
    return "/" not in spec and os.sep not in spec and not spec.endswith(".gguf")


def describe_checkpoint(directory: Path, policy: Policy = OPEN_POLICY) -> dict[str, object]:
    """``apprentice model info`` of a checkpoint: its identity, and whether it verifies.

    A checkpoint that fails a check is still described (``verified`` false, ``problem``);
    only an unreadable manifest raises.
    """
    from model.gguf import describe

    directory = Path(directory).expanduser()
    manifest, raw = load_manifest(directory)
    problem: str | None = None
    signature: Signature | None = None
    try:
        signature = verify_checkpoint(directory, policy).signature
    except CheckpointError as error:
        problem = str(error)
        with contextlib.suppress(CheckpointError):
            signature = check_signature(directory, raw, policy.trusted)
    base: dict[str, object] | str
    try:
        base = describe(read_gguf(directory / manifest.base.file))
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
        "provenance": dict(manifest.provenance),
    }


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
        gguf=report.directory / manifest.base.file,
        loras=tuple(Lora(report.directory / a.file, a.scale) for a in manifest.adapters),
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
    )
