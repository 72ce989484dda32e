"""Pack a team checkpoint: the base GGUF, LoRA adapters and a manifest binding them together.

``pack_checkpoint`` is a plain function so that training code can package the adapter it
just exported; ``apprentice model pack`` is a thin wrapper around it. A checkpoint may also
carry the LoRA in PEFT's layout (``peft/``), for a team that serves it from vLLM.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from model.checkpoints.atomic_io import write_bytes_atomic
from model.checkpoints.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    AdapterEntry,
    FileEntry,
    FimMarker,
    FimSpec,
    Manifest,
    PeftEntry,
    is_plain_name,
    manifest_digest,
    manifest_toml,
    parse_manifest,
)
from model.checkpoints.peft_files import CONFIG_NAME, PEFT_DIR, check_peft_config, peft_folder_files
from model.checkpoints.verification import check_adapter_layout
from model.runtime.api import ModelInfo
from model.runtime.default_model import sha256_file
from model.runtime.fim import (
    KNOWN_TEMPLATES,
    TRAINED_TEMPLATES,
    all_markers,
    canonical_family,
    family_template,
    select_template,
)
from model.runtime.gguf import GgufInfo, read_gguf

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Packed:
    """A packed checkpoint: where, what its manifest says, and the manifest's sha256."""

    directory: Path
    manifest: Manifest
    digest: str
    signed: bool


def pack_checkpoint(
    directory: str | os.PathLike[str],
    base: str | os.PathLike[str],
    *,
    name: str,
    version: str,
    adapters: Sequence[tuple[str | os.PathLike[str], float]] = (),
    fim: str | None = None,
    fim_stop_tokens: Sequence[str] = (),
    stop: Sequence[str] = (),
    context_length: int | None = None,
    licence: str = "",
    embedding_model: str = "",
    description: str = "",
    provenance: Mapping[str, Any] | None = None,
    sign_key: str | os.PathLike[str] | None = None,
    signer: str = "",
    link: bool = True,
    peft_adapter: str | os.PathLike[str] | None = None,
) -> Packed:
    """Put ``base`` and ``adapters`` (path, scale) in ``directory`` with a manifest; return it.

    Files are hard-linked when ``link`` and the filesystem allow it, else copied (through a
    temp file: nothing partial at a final name). ``fim``: None detects the template from the
    base GGUF's FIM tokens (``none`` without them); ``none``; a known family
    (``qwen2.5-coder``...); or ``psm:PREFIX,SUFFIX[,MIDDLE]`` / ``spm:PREFIX,SUFFIX[,MIDDLE]``
    naming single-token markers of the base vocabulary (``spm`` puts the suffix first).
    ``context_length`` defaults to the base's. With ``sign_key`` (a PEM private key from
    ``apprentice model keygen``) the manifest is signed. ``peft_adapter``: a folder written
    by peft's ``save_pretrained`` (safetensors), packed as ``peft/`` with its
    ``adapter_config.json`` and ``adapter_model.safetensors`` listed in the manifest like the
    other files (llama.cpp never loads them; vLLM does). Raises ValueError or CheckpointError
    for bad input, before anything is written.
    """
    target = Path(directory).expanduser()
    base_path = Path(base).expanduser()
    sources = [base_path, *(Path(p).expanduser() for p, _ in adapters)]
    names = [p.name for p in sources]
    for path, file_name in zip(sources, names, strict=True):
        if not path.is_file():
            raise ValueError(f"{path} is not a file")
        if not is_plain_name(file_name):
            raise ValueError(f"{file_name!r} cannot be a checkpoint file name; rename it")
    if len(set(names)) != len(names):
        raise ValueError("the base and the adapters need distinct file names")
    if peft_adapter is not None and PEFT_DIR in names:
        raise ValueError(f"{PEFT_DIR!r} is the PEFT folder's name in a checkpoint; rename the file")
    spec = parse_fim_option(fim)
    custom = [spec[1], spec[2], *spec[3]] if spec else []
    base_info = read_gguf(base_path, markers={*all_markers(), *custom, *fim_stop_tokens})
    for adapter_path in sources[1:]:
        check_adapter_layout(read_gguf(adapter_path), base_info)
    fim_spec = _fim_spec(base_info, fim, fim_stop_tokens)
    peft_sources = peft_folder_files(Path(peft_adapter)) if peft_adapter is not None else []
    key = None
    if sign_key is not None:
        from model.checkpoints.signing import load_private_key

        key = load_private_key(Path(sign_key))

    target.mkdir(parents=True, exist_ok=True)
    entries = [_place(src, target / src.name, link) for src in sources]
    peft = _place_peft(peft_sources, target / PEFT_DIR, link) if peft_sources else None
    base_entry = entries[0]
    manifest = Manifest(
        name=name,
        version=version,
        base=base_entry,
        architecture=base_info.architecture,
        adapters=tuple(
            AdapterEntry(
                e.file, e.sha256, e.size, scale=float(scale), base_sha256=base_entry.sha256
            )
            for e, (_, scale) in zip(entries[1:], adapters, strict=True)
        ),
        fim=fim_spec,
        stop=tuple(stop),
        context_length=context_length or base_info.context_length,
        licence=licence,
        embedding_model=embedding_model,
        description=description,
        provenance=dict(provenance or {}),
        peft=peft,
    )
    raw = manifest_toml(manifest).encode("utf-8")
    parse_manifest(raw)  # what we write must read back (names, versions, values)
    write_bytes_atomic(target / MANIFEST_NAME, raw)
    signature_path = target / SIGNATURE_NAME
    if key is not None:
        from model.checkpoints.signing import sign_manifest

        write_bytes_atomic(signature_path, sign_manifest(raw, key, signer))
    else:
        signature_path.unlink(missing_ok=True)  # a stale signature would no longer match
    return Packed(target, manifest, manifest_digest(raw), key is not None)


def parse_adapter_option(text: str) -> tuple[str, float]:
    """``ADAPTER.gguf[:SCALE]`` -> (path, scale)."""
    path, sep, tail = text.rpartition(":")
    if sep and path:
        try:
            return path, float(tail)
        except ValueError:
            pass
    return text, 1.0


def parse_fim_option(fim: str | None) -> tuple[str, str, str, list[str]] | None:
    """``psm:P,S[,M]`` or ``spm:P,S[,M]`` -> (order, prefix, suffix, [middle]); else None."""
    if fim is None or ":" not in fim:
        return None
    order, _, markers = fim.partition(":")
    parts = markers.split(",")
    if order not in ("psm", "spm") or len(parts) not in (2, 3) or not all(parts):
        raise ValueError(
            f"--fim {fim!r}: expected none, a family name, or psm:PREFIX,SUFFIX[,MIDDLE]"
        )
    return order, parts[0], parts[1], parts[2:]


def _fim_spec(info: GgufInfo, fim: str | None, stop_tokens: Sequence[str]) -> FimSpec:
    """The FIM section: markers looked up in the base vocabulary, each a single token."""

    ids = dict(info.marker_ids)
    for role, text in info.fim_tokens.items():
        ids.setdefault(text, info.fim_token_ids[role])

    def marker(text: str) -> FimMarker:
        if text not in ids:
            raise ValueError(f"the FIM marker {text!r} is not a token of {info.path.name}")
        return FimMarker(text, ids[text])

    stops = tuple(marker(t) for t in stop_tokens)
    custom = parse_fim_option(fim)
    if custom is not None:
        order, prefix, suffix, middle = custom
        return FimSpec(
            template="custom",
            order=order,
            prefix=marker(prefix),
            suffix=marker(suffix),
            middle=marker(middle[0]) if middle else None,
            stop_tokens=stops,
        )
    if fim is not None and fim.strip().lower() in ("none", "off", "prefix"):
        return FimSpec()
    if fim is None:
        model = ModelInfo(
            name=info.name,
            special_tokens=info.known_fim_markers,
            fim_tokens=dict(info.fim_tokens),
        )
        template = select_template(model)
        if template is None:
            logger.info("%s has no FIM tokens: prefix-only prompts", info.path.name)
            return FimSpec()
        family = template.family if template.family in KNOWN_TEMPLATES else "custom"
    else:
        family = canonical_family(fim)
        found = family_template(fim)
        if found is None:
            names = [*KNOWN_TEMPLATES, *TRAINED_TEMPLATES, "none", "psm:...", "spm:..."]
            raise ValueError(f"unknown FIM template {fim!r}; choose one of: {', '.join(names)}")
        known_template = found

        def spelled(m: str) -> str:  # as the vocabulary spells it
            return next((s for s in known_template.spellings(m) if s in ids), m)

        template = replace(
            known_template,
            prefix=spelled(known_template.prefix),
            suffix=spelled(known_template.suffix),
            middle=spelled(known_template.middle) if known_template.middle else None,
        )
    return FimSpec(
        template=family,
        order=template.order,
        prefix=marker(template.prefix),
        suffix=marker(template.suffix),
        middle=marker(template.middle) if template.middle else None,
        stop_tokens=stops,
    )


def _place_peft(sources: Sequence[Path], folder: Path, link: bool) -> PeftEntry:
    """The PEFT folder's files placed in ``folder`` and described (base named by its config)."""
    folder.mkdir(exist_ok=True)
    files = tuple(_place(src, folder / src.name, link) for src in sources)
    config = check_peft_config(folder / CONFIG_NAME)
    base_model = config.get("base_model_name_or_path")
    return PeftEntry(folder.name, files, base_model if isinstance(base_model, str) else "")


def _place(source: Path, dest: Path, link: bool) -> FileEntry:
    """Hard-link or copy ``source`` to ``dest`` (atomically) and describe it."""
    with contextlib.suppress(FileNotFoundError):
        if dest.samefile(source):
            return FileEntry(dest.name, sha256_file(dest), dest.stat().st_size)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        linked = False
        if link:
            tmp.unlink()
            try:
                os.link(source, tmp)
                linked = True
            except OSError:
                pass
        if not linked:
            shutil.copyfile(source, tmp)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return FileEntry(dest.name, sha256_file(dest), dest.stat().st_size)
