"""Write LoRA adapter GGUFs that llama.cpp loads, shaped after a real base model (tests only).

llama.cpp's adapter layout: ``general.type = adapter``, ``adapter.type = lora``,
``adapter.lora.alpha``, and per target tensor ``NAME.lora_a`` (dims [in, rank]) and
``NAME.lora_b`` (dims [rank, out]), F32 here, dims listed innermost first as GGUF does.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from model.runtime.gguf import GgufInfo
from tests.gguf_writer import T_F32, gstr, kv_str, kv_u32

_ALIGN = 32


def kv_f32(key: str, value: float) -> bytes:
    return gstr(key) + struct.pack("<If", T_F32, value)


def write_lora(
    path: Path,
    base: GgufInfo,
    targets: Sequence[str] = ("blk.0.attn_q.weight", "blk.0.ffn_down.weight"),
    *,
    rank: int = 4,
    alpha: float = 4.0,
    magnitude: float = 0.5,
    seed: int = 0,
    architecture: str | None = None,
    shape_of: dict[str, tuple[int, int]] | None = None,
) -> Path:
    """An adapter on ``targets`` of ``base``; ``shape_of`` overrides a target's (in, out)."""
    rng = np.random.default_rng(seed)
    tensors: list[tuple[str, tuple[int, int], np.ndarray]] = []
    for name in targets:
        if shape_of and name in shape_of:
            n_in, n_out = shape_of[name]
        else:
            dims = base.tensors[name][0]
            n_in, n_out = dims[0], dims[1]
        a = (rng.standard_normal((rank, n_in)) * magnitude).astype(np.float32)
        b = (rng.standard_normal((n_out, rank)) * magnitude).astype(np.float32)
        tensors.append((f"{name}.lora_a", (n_in, rank), a))
        tensors.append((f"{name}.lora_b", (rank, n_out), b))
    kvs = [
        kv_str("general.architecture", architecture or base.architecture),
        kv_str("general.type", "adapter"),
        kv_str("general.name", path.stem),
        kv_str("adapter.type", "lora"),
        kv_f32("adapter.lora.alpha", alpha),
        kv_u32("general.alignment", _ALIGN),
    ]
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs)
    offset = 0
    blobs = []
    for name, dims, data in tensors:
        out += gstr(name) + struct.pack("<I", 2) + struct.pack("<2Q", *dims)
        out += struct.pack("<IQ", 0, offset)  # type 0: F32
        raw = data.tobytes()
        blobs.append(raw + b"\0" * ((-len(raw)) % _ALIGN))
        offset += len(blobs[-1])
    out += b"\0" * ((-len(out)) % _ALIGN)
    path.write_bytes(out + b"".join(blobs))
    return path
