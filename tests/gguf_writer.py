"""A tiny GGUF writer for tests: valid headers, vocabularies and tensor data, or broken ones."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from model.runtime.gguf import GGML_TYPES

T_U32, T_I32, T_F32, T_BOOL, T_STRING, T_ARRAY, T_U64 = 4, 5, 6, 7, 8, 9, 10
GGML_IDS = {name: tid for tid, (name, _, _) in GGML_TYPES.items()}


def gstr(text: str | bytes) -> bytes:
    """A GGUF string: u64 length then bytes."""
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def kv_u32(key: str, value: int) -> bytes:
    return gstr(key) + struct.pack("<II", T_U32, value)


def kv_str(key: str, value: str) -> bytes:
    return gstr(key) + struct.pack("<I", T_STRING) + gstr(value)


def kv_strings(key: str, items: list[str]) -> bytes:
    body = b"".join(gstr(item) for item in items)
    return gstr(key) + struct.pack("<IIQ", T_ARRAY, T_STRING, len(items)) + body


def kv_f32s(key: str, items: list[float]) -> bytes:
    body = struct.pack(f"<{len(items)}f", *items)
    return gstr(key) + struct.pack("<IIQ", T_ARRAY, T_F32, len(items)) + body


VOCAB = ["<pad>", "<eos>", "<bos>", "hello", "world", "def", "<|fim_prefix|>"]
VOCAB += ["<|fim_suffix|>", "<|fim_middle|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
NEW_FIM_KEYS = [
    kv_u32("tokenizer.ggml.fim_pre_token_id", 6),
    kv_u32("tokenizer.ggml.fim_suf_token_id", 7),
    kv_u32("tokenizer.ggml.fim_mid_token_id", 8),
    kv_u32("tokenizer.ggml.fim_pad_token_id", 9),
    kv_u32("tokenizer.ggml.fim_rep_token_id", 10),
    kv_u32("tokenizer.ggml.fim_sep_token_id", 11),
]
OLD_FIM_KEYS = [
    kv_u32("tokenizer.ggml.prefix_token_id", 6),
    kv_u32("tokenizer.ggml.suffix_token_id", 7),
    kv_u32("tokenizer.ggml.middle_token_id", 8),
]


@dataclass
class Tensor:
    name: str
    dims: list[int]
    ggml_type: str = "F32"


@dataclass
class Gguf:
    """A small GGUF file under construction."""

    kvs: list[bytes] = field(default_factory=list)
    tensors: list[Tensor] = field(default_factory=list)
    version: int = 3
    alignment: int = 32
    magic: bytes = b"GGUF"

    def data_sizes(self) -> list[int]:
        sizes = []
        for t in self.tensors:
            _, block, block_bytes = GGML_TYPES[GGML_IDS[t.ggml_type]]
            n = 1
            for d in t.dims:
                n *= d
            sizes.append(n // block * block_bytes)
        return sizes

    def build(self) -> bytes:
        out = self.magic + struct.pack("<IQQ", self.version, len(self.tensors), len(self.kvs))
        out += b"".join(self.kvs)
        offset = 0
        for t, size in zip(self.tensors, self.data_sizes(), strict=True):
            out += gstr(t.name) + struct.pack("<I", len(t.dims))
            out += struct.pack(f"<{len(t.dims)}Q", *t.dims)
            out += struct.pack("<IQ", GGML_IDS[t.ggml_type], offset)
            offset += size + (-size) % self.alignment
        out += b"\0" * ((-len(out)) % self.alignment)
        for size in self.data_sizes():
            out += bytes(range(256)) * (size // 256) + b"\x07" * (size % 256)
            out += b"\0" * ((-size) % self.alignment)
        return out

    def write(self, path: Path) -> Path:
        path.write_bytes(self.build())
        return path


def tiny_model(
    *, fim: list[bytes] | None = None, fim_first: bool = False, architecture: str = "llama"
) -> Gguf:
    """A plausible small model: a llama-ish header, a vocab with FIM tokens, three tensors."""
    fim_keys = NEW_FIM_KEYS if fim is None else fim
    kvs = [
        kv_str("general.architecture", architecture),
        kv_str("general.name", "Tiny Test"),
        kv_u32(f"{architecture}.context_length", 2048),
        kv_u32("general.file_type", 15),
        kv_strings("general.tags", ["a", "b"]),
    ]
    vocab = [kv_strings("tokenizer.ggml.tokens", VOCAB), kv_f32s("tokenizer.ggml.scores", [0.0])]
    kvs += fim_keys + vocab if fim_first else vocab + fim_keys
    tensors = [
        Tensor("token_embd.weight", [256, len(VOCAB)], "Q4_K"),
        Tensor("blk.0.attn_q.weight", [256, 256], "Q4_K"),
        Tensor("blk.0.ffn_down.weight", [256, 64], "Q6_K"),
        Tensor("output_norm.weight", [256], "F32"),
    ]
    return Gguf(kvs=kvs, tensors=tensors)
