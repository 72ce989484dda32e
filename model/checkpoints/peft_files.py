"""The PEFT copy of a checkpoint's LoRA: the folder vLLM and peft load, checked without torch.

A trained student carries its adapter twice: ``adapter.gguf`` for llama.cpp (what
Apprentice loads) and, optionally, a folder in PEFT's own layout (``adapter_config.json``
beside ``adapter_model.safetensors``) for a team that serves the student from vLLM
(``--lora-modules NAME=CHECKPOINT/peft``). The folder is listed in the manifest like every
other file, so its bytes are hashed and signed; the checks here add what a hash cannot
say: that the config is a LoRA config naming no path of the trainer's machine, and that
the weights file is safetensors (never pickle) holding LoRA A and B matrices of the
declared rank. The safetensors header is read by hand (8 bytes of length, then JSON), so
the serving path needs neither torch nor safetensors.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model.checkpoints.manifest import MANIFEST_NAME, CheckpointError, PeftEntry

logger = logging.getLogger(__name__)

PEFT_DIR = "peft"  # the folder's name inside a checkpoint
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_FILES = (CONFIG_NAME, WEIGHTS_NAME)
# What ``torch.save`` writes: pickle, which runs code when loaded. Never packed.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
_MAX_CONFIG = 1 << 20
_MAX_HEADER = 64 << 20
# peft's tensor names: ...<module>.lora_A.weight / .lora_B.weight (an adapter named other
# than "default" puts its name before .weight).
_LORA_TENSOR = re.compile(r"^(?P<module>.+)\.lora_(?P<half>[AB])(?:\.[^.]+)?\.weight$")


def peft_folder_files(folder: Path) -> list[Path]:
    """The files of a PEFT folder that a checkpoint packs, after every check (for ``pack``).

    Raises ValueError naming the problem: not a folder, a required file missing, pickle
    weights instead of safetensors; CheckpointError when the config or the weights fail
    their checks. Other files (peft's README model card) are left out.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder (a PEFT adapter saved by save_pretrained)")
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickled and not (folder / WEIGHTS_NAME).is_file():
        raise ValueError(
            f"{folder} holds {', '.join(pickled)} (pickle, which runs code when loaded) and no "
            f"{WEIGHTS_NAME}: save the adapter with safe_serialization=True"
        )
    for name in PEFT_FILES:
        if not (folder / name).is_file():
            raise ValueError(f"{folder} has no {name}: not a PEFT adapter folder")
    if pickled:
        logger.info("%s: leaving out %s (pickle)", folder, ", ".join(pickled))
    config = check_peft_config(folder / CONFIG_NAME)
    check_peft_weights(folder / WEIGHTS_NAME, config)
    return [folder / name for name in PEFT_FILES]


def check_peft_folder(checkpoint: Path, entry: PeftEntry) -> None:
    """The checks of a checkpoint's PEFT folder beyond its files' hashes (``verify``).

    The manifest must list both files of the layout (an unlisted file is not signed); the
    hashes themselves are checked with the checkpoint's other files.
    """
    listed = {f.file for f in entry.files}
    missing = [name for name in PEFT_FILES if name not in listed]
    if missing:
        raise CheckpointError(
            checkpoint / MANIFEST_NAME,
            "manifest",
            f"the [peft] table does not list {', '.join(missing)}",
        )
    folder = checkpoint / entry.directory
    check_peft_weights(folder / WEIGHTS_NAME, check_peft_config(folder / CONFIG_NAME))


def check_peft_config(path: Path) -> dict[str, Any]:
    """``adapter_config.json`` parsed and checked: a LoRA config naming no local path."""
    try:
        with path.open("rb") as f:
            raw = f.read(_MAX_CONFIG + 1)
    except OSError as exc:
        raise CheckpointError(path, "PEFT config", f"cannot read it: {exc.strerror}") from None
    if len(raw) > _MAX_CONFIG:
        raise CheckpointError(path, "PEFT config", f"larger than {_MAX_CONFIG} bytes")
    try:
        config = json.loads(raw)
    except (ValueError, RecursionError):
        raise CheckpointError(path, "PEFT config", "not valid JSON") from None
    if not isinstance(config, dict):
        raise CheckpointError(path, "PEFT config", "not a JSON object")
    if config.get("peft_type") != "LORA":
        kind = config.get("peft_type")
        raise CheckpointError(path, "PEFT config", f"peft_type is {kind!r}, not 'LORA'")
    rank = config.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise CheckpointError(path, "PEFT config", f"r should be a positive integer, got {rank!r}")
    alpha = config.get("lora_alpha")
    if not isinstance(alpha, int | float) or isinstance(alpha, bool):
        raise CheckpointError(path, "PEFT config", f"lora_alpha should be a number, got {alpha!r}")
    targets = config.get("target_modules")
    if not targets or not isinstance(targets, str | list):
        raise CheckpointError(path, "PEFT config", "target_modules is missing or empty")
    leaked = local_paths(config)
    if leaked:
        raise CheckpointError(
            path,
            "PEFT config",
            f"{leaked[0]} names a path on the machine that wrote it; "
            "base_model_name_or_path should be the base model's name",
        )
    return config


def local_paths(config: Mapping[str, Any]) -> list[str]:
    """The keys of ``config`` (dotted) whose string values are absolute local paths."""
    found: list[str] = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, str):
            if os.path.isabs(value) or value.startswith("~") or re.match(r"^[A-Za-z]:[\\/]", value):
                found.append(where)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                walk(item, f"{where}.{key}" if where else str(key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]")

    walk(config, "")
    return found


def check_peft_weights(path: Path, config: Mapping[str, Any]) -> None:
    """``adapter_model.safetensors`` holds LoRA A/B matrices of the config's rank, in bounds.

    Reads the safetensors header only: its length, its JSON, each tensor's dtype, shape and
    byte range against the file's size.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            length = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            if not 2 <= length <= min(_MAX_HEADER, size - 8):
                raise CheckpointError(path, "PEFT weights", "not a safetensors file")
            header = json.loads(f.read(length))
    except OSError as exc:
        raise CheckpointError(path, "PEFT weights", f"cannot read it: {exc.strerror}") from None
    except (ValueError, RecursionError):
        raise CheckpointError(path, "PEFT weights", "the safetensors header is not JSON") from None
    if not isinstance(header, dict):
        raise CheckpointError(path, "PEFT weights", "the safetensors header is not an object")
    rank = config.get("r")
    ranked = not config.get("rank_pattern")  # per-module ranks: no one rank to check
    data_size = size - 8 - length
    halves: dict[str, set[str]] = {}
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        shape, offsets = _tensor_fields(path, name, tensor)
        if offsets[1] > data_size:
            raise CheckpointError(path, "PEFT weights", f"{name} lies past the end of the file")
        match = _LORA_TENSOR.match(name)
        if match is None:
            raise CheckpointError(path, "PEFT weights", f"{name} is not a LoRA A or B matrix")
        half = match["half"]
        if len(shape) != 2:
            raise CheckpointError(path, "PEFT weights", f"{name} has shape {shape}, not a matrix")
        tensor_rank = shape[0] if half == "A" else shape[1]
        if ranked and tensor_rank != rank:
            raise CheckpointError(
                path, "PEFT weights", f"{name} has rank {tensor_rank}; the config says r = {rank}"
            )
        halves.setdefault(match["module"], set()).add(half)
    if not halves:
        raise CheckpointError(path, "PEFT weights", "the file holds no LoRA tensors")
    for module, found in sorted(halves.items()):
        if found != {"A", "B"}:
            missing = "lora_B" if "A" in found else "lora_A"
            raise CheckpointError(path, "PEFT weights", f"{module} lacks its {missing}")


def _tensor_fields(path: Path, name: str, tensor: Any) -> tuple[list[int], tuple[int, int]]:
    """A header entry's shape and byte range, checked to be well formed."""
    shape = tensor.get("shape") if isinstance(tensor, dict) else None
    offsets = tensor.get("data_offsets") if isinstance(tensor, dict) else None
    ints = (
        isinstance(shape, list)
        and isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in shape + offsets)
    )
    if not ints or offsets is None or offsets[0] > offsets[1] or shape is None:
        raise CheckpointError(path, "PEFT weights", f"{name}: a malformed header entry")
    return shape, (offsets[0], offsets[1])
