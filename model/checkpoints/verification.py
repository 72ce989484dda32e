"""Every check of a team checkpoint, before llama.cpp sees a byte of it.

The manifest (schema, fields), the signature against the trust policy, each file's size
and sha256 (hashes cached by size, mtime, ctime and inode, so a file is hashed once per
content), the GGUF headers (through the project's bounded reader), each adapter's binding,
architecture and tensor layout against its base, the declared FIM tokens against the
vocabulary, and the PEFT folder's config and weights header when the checkpoint has one.
The first failure raises CheckpointError naming the file and the check.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.checkpoints.manifest import (
    SIGNATURE_NAME,
    AdapterEntry,
    CheckpointError,
    FileEntry,
    FimSpec,
    Manifest,
    load_manifest,
    manifest_digest,
)
from model.checkpoints.peft_files import check_peft_folder
from model.checkpoints.signing import PublicKey, Signature, check_signature, parse_public_key
from model.runtime.api import ModelError
from model.runtime.default_model import (
    default_cache_dir,
    embedded_sha256,
    ensure_default_model,
    sha256_file,
)
from model.runtime.fim import all_markers, family_template
from model.runtime.gguf import GgufInfo, read_gguf

logger = logging.getLogger(__name__)

_LORA_A, _LORA_B = ".lora_a", ".lora_b"


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
            except (OSError, ValueError):
                data = {}
            # Files that are gone (removed checkpoints, temp directories) are forgotten.
            records = data if isinstance(data, dict) else {}
            self._memory = {key: value for key, value in records.items() if os.path.exists(key)}
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
        record = {
            "stamp": [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino],
            "sha256": digest,
        }
        with self._lock:
            records = self._records()
            if records.get(str(path.resolve())) == record:
                return  # already known: no write
            records[str(path.resolve())] = record
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
    # The base GGUF: in the checkpoint, or the embedded model when the checkpoint leaves
    # out a base that is the embedded one (a shipped student is its adapter alone).
    base_path: Path


def verify_checkpoint(
    directory: Path, policy: Policy = OPEN_POLICY, *, cache: HashCache | None = None
) -> Report:
    """Run every check on the checkpoint in ``directory``; raise CheckpointError at the first."""
    directory = Path(directory).expanduser()
    manifest, raw = load_manifest(directory)
    checks = ["manifest"]
    signature = check_signed(directory, raw, policy)
    checks.append("signature" if signature else "unsigned")
    cache = cache or default_hash_cache()
    base_path = _embedded_base(directory, manifest.base, cache)
    for entry in manifest.files():
        if entry is manifest.base and base_path is not None:
            checks.append("embedded base")  # verified against its package's sha256
            continue
        _check_file(directory, entry, cache)
    checks.append("files")
    base_path = base_path or directory / manifest.base.file
    base = read_header(base_path, manifest.fim)
    if manifest.architecture and base.architecture != manifest.architecture:
        raise CheckpointError(
            base_path,
            "architecture",
            f"the base is {base.architecture!r}, the manifest says {manifest.architecture!r}",
        )
    checks.append("headers")
    for adapter in manifest.adapters:
        _check_adapter(directory, adapter, manifest.base, base)
    if manifest.adapters:
        checks.append("adapters")
    _check_fim(base_path, manifest.fim, base)
    checks.append("fim")
    if manifest.peft is not None:
        check_peft_folder(directory, manifest.peft)
        checks.append("peft")
    digest = manifest_digest(raw)
    return Report(directory, manifest, digest, signature, base, tuple(checks), base_path)


def is_embedded_base(entry: FileEntry) -> bool:
    """Whether a checkpoint's base is the embedded model (by the package's sha256)."""
    return entry.sha256 == embedded_sha256()


def _embedded_base(directory: Path, entry: FileEntry, cache: HashCache) -> Path | None:
    """The embedded model, when the checkpoint leaves out its base and that base is it."""
    if (directory / entry.file).exists() or not is_embedded_base(entry):
        return None
    return embedded_model(cache)[0]


def embedded_model(cache: HashCache | None = None) -> tuple[Path, str]:
    """The embedded GGUF and its sha256, checked against its package (``ensure_default_model``).

    The digest is recorded in the hash cache: the check of pinned files before each model
    load then answers from a stat instead of hashing the 250 MB file a second time.
    """
    path = ensure_default_model()
    digest = embedded_sha256() or ""
    if digest:
        (cache or default_hash_cache()).prime(path, digest)
    return path, digest


def check_signed(directory: Path, raw_manifest: bytes, policy: Policy) -> Signature | None:
    """The signature beside the manifest in ``directory``, checked against ``policy``.

    Needs only the manifest and the signature file: an install runs it before downloading
    anything else, so an untrusted mirror costs two small requests, not the model.
    """
    signature = check_signature(directory, raw_manifest, policy.trusted)
    _apply_policy(directory, signature, policy)
    return signature


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


def check_pinned(pins: tuple[tuple[Path, str], ...], cache: HashCache | None = None) -> None:
    """Each file still has the sha256 it had when verified (before every model (re)load).

    The hash cache answers from a stat when nothing about a file changed, so this is cheap;
    a file replaced or rewritten since is hashed again and refused when it differs.
    """
    cache = cache or default_hash_cache()
    for path, expected in pins:
        try:
            digest = cache.sha256(path)
        except OSError as exc:
            raise CheckpointError(path, "sha256", f"cannot read it: {exc.strerror}") from None
        if digest != expected:
            raise CheckpointError(
                path,
                "sha256",
                "the file changed since it was verified (its digest is now "
                f"{digest[:16]}…, it was {expected[:16]}…); reload the model to verify it again",
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


def read_header(path: Path, fim: FimSpec | None = None) -> GgufInfo:
    """A GGUF's header (with the FIM markers' token texts); CheckpointError if unreadable."""
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
    info = read_header(path)
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
