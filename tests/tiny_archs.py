"""Tiny random models of every architecture ``apprentice train`` takes, written as GGUF files.

Each has 2 blocks, a hidden size of 64 and a vocabulary of a few hundred tokens that holds
its family's FIM or reserved tokens, so transformers (``gguf_file=``) and llama.cpp both load
it and compute the same thing (F32 tensors). The vocabularies are real tokenizer models:
SentencePiece ``llama`` (bytes, characters and a few merges, scored) for the llama, mistral,
phi3 and gemma families, byte-level ``gpt2`` BPE with merges for qwen2 and starcoder2.

Which family each imitates (and so which FIM layout training must pick):

| key | GGUF architecture | imitates | layout |
|---|---|---|---|
| llama | llama | CodeLlama (``▁<PRE>`` ``▁<SUF>`` ``▁<MID>`` ``▁<EOT>``) | codellama |
| mistral | llama (as Mistral files are) | Codestral (``[PREFIX]`` ``[SUFFIX]``) | codestral |
| qwen2 | qwen2 | Qwen2.5-Coder | qwen2.5-coder |
| starcoder2 | starcoder2 | StarCoder2 | starcoder2 |
| gemma2 | gemma2 | Gemma 2 (``<unusedN>``, no FIM tokens) | apprentice-gemma2 |
| gemma3 | gemma3 | Gemma 3 270M (``<unusedN>``, no FIM tokens) | apprentice-gemma3 |
| phi3 | phi3 | Phi-3 (``<|placeholderN|>``, no FIM tokens) | apprentice-phi3 |

``EXTRA`` holds variants used by layout tests only: DeepSeek-Coder (llama with ``gpt2`` BPE),
CodeGemma's markers on a Gemma 3, and a plain llama with neither FIM nor reserved tokens.
``distill_shop`` makes the one small dataset they all learn (``apprentice distill --teacher
none`` of a three-file repository) and ``train_args`` the few fast steps they train.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

HIDDEN = 64
FEED_FORWARD = 128
BLOCKS = 2
CONTEXT = 512

SPM_MERGES = (
    "▁▁", "▁▁▁▁", "▁▁▁▁▁▁▁▁", "de", "▁de", "▁def", "re", "tu", "rn", "ret", "retu", "return",
    "▁return", "in", "▁in", "se", "lf", "self", "▁self", "▁=", "or", "▁(", "):", "**", "im",
    "port", "▁import", "an", "er", "on", "en", "st", "at", "co", "un", "ing",
)  # fmt: skip


@dataclass(frozen=True)
class Tiny:
    """One tiny model: its GGUF architecture and name, vocabulary and special tokens."""

    key: str
    architecture: str
    family: str  # the FIM layout training must choose for it
    vocabulary: Literal["spm", "bpe"]
    specials: tuple[str, ...]  # control tokens, after the model's bos/eos/unk
    fim: dict[str, str] = field(default_factory=dict)  # role -> token, written as fim_* keys
    name: str = ""
    bos: str = "<s>"
    eos: str = "</s>"
    unk: str | None = "<unk>"
    pad: str | None = None
    add_bos: bool = True
    add_space_prefix: bool = True
    pre: str = "default"
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 16

    @property
    def base_tokens(self) -> tuple[str, ...]:
        """The tokens before the specials, in the family's order."""
        found = [t for t in (self.pad, self.unk, self.bos, self.eos) if t]
        return tuple(dict.fromkeys(found))


CODELLAMA = ("▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>")
GEMMA = dict(
    bos="<bos>", eos="<eos>", unk="<unk>", pad="<pad>", add_space_prefix=False,
    heads=2, kv_heads=1, head_dim=256,  # transformers scales queries by 256 ** -0.5
)  # fmt: skip
GEMMA_RESERVED = (*(f"<unused{i}>" for i in range(6)), "<start_of_turn>", "<end_of_turn>")
QWEN = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
)  # fmt: skip
STARCODER = (
    "<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>",
    "<repo_name>", "<file_sep>",
)  # fmt: skip
PHI3 = (
    "</s>", "<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>",
    "<|placeholder3|>", "<|placeholder4|>", "<|system|>", "<|end|>", "<|placeholder5|>",
    "<|placeholder6|>", "<|user|>",
)  # fmt: skip
DEEPSEEK = (
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜fim▁hole｜>", "<｜fim▁begin｜>",
    "<｜fim▁end｜>", "<|EOT|>",
)  # fmt: skip

ARCHS: dict[str, Tiny] = {
    tiny.key: tiny
    for tiny in (
        Tiny(
            "llama", "llama", "codellama", "spm", CODELLAMA, name="tiny codellama",
            fim={"prefix": "▁<PRE>", "suffix": "▁<SUF>", "middle": "▁<MID>"},
        ),
        # A GGUF named just "mistral" makes transformers build a Mistral it cannot map
        # (gguf-py has no such architecture); Mistral-family files load as llama.
        Tiny("mistral", "llama", "codestral", "spm", ("[INST]", "[/INST]", "[PREFIX]", "[SUFFIX]"),
             name="tiny codestral"),
        Tiny(
            "qwen2", "qwen2", "qwen2.5-coder", "bpe", QWEN, name="tiny qwen2.5 coder",
            bos="<|endoftext|>", eos="<|endoftext|>", unk=None, add_bos=False,
            add_space_prefix=False, pre="qwen2",
            fim={"prefix": "<|fim_prefix|>", "suffix": "<|fim_suffix|>",
                 "middle": "<|fim_middle|>", "pad": "<|fim_pad|>", "repo": "<|repo_name|>",
                 "sep": "<|file_sep|>"},
        ),
        Tiny(
            "starcoder2", "starcoder2", "starcoder2", "bpe", STARCODER, name="tiny starcoder2",
            bos="<|endoftext|>", eos="<|endoftext|>", unk=None, add_bos=False,
            add_space_prefix=False, pre="starcoder",
            fim={"prefix": "<fim_prefix>", "suffix": "<fim_suffix>", "middle": "<fim_middle>",
                 "pad": "<fim_pad>", "repo": "<repo_name>", "sep": "<file_sep>"},
        ),
        Tiny("gemma2", "gemma2", "apprentice-gemma2", "spm", GEMMA_RESERVED, name="tiny gemma2",
             **GEMMA),  # type: ignore[arg-type]
        Tiny("gemma3", "gemma3", "apprentice-gemma3", "spm", GEMMA_RESERVED, name="tiny gemma3",
             **GEMMA),  # type: ignore[arg-type]
        Tiny("phi3", "phi3", "apprentice-phi3", "spm", PHI3, name="tiny phi3", eos="<|endoftext|>",
             pad="<|endoftext|>"),
    )
}  # fmt: skip

EXTRA: dict[str, Tiny] = {
    tiny.key: tiny
    for tiny in (
        Tiny(
            "deepseek", "llama", "deepseek-coder", "bpe", DEEPSEEK, name="tiny deepseek coder",
            bos="<｜begin▁of▁sentence｜>", eos="<｜end▁of▁sentence｜>", unk=None,
            add_space_prefix=False, pre="deepseek-coder",
            fim={"prefix": "<｜fim▁begin｜>", "suffix": "<｜fim▁hole｜>",
                 "middle": "<｜fim▁end｜>"},
        ),
        Tiny(
            "codegemma", "gemma3", "codegemma", "spm",
            (*GEMMA_RESERVED, "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
             "<|file_separator|>"),
            name="tiny codegemma",
            fim={"prefix": "<|fim_prefix|>", "suffix": "<|fim_suffix|>",
                 "middle": "<|fim_middle|>"},
            **GEMMA,  # type: ignore[arg-type]
        ),
        Tiny("plain", "llama", "", "spm", (), name="tiny plain llama"),
    )
}  # fmt: skip


def vocabulary(tiny: Tiny) -> tuple[list[str], list[float], list[int], list[str]]:
    """(tokens, scores, token types, merges) of ``tiny``'s tokenizer model."""
    if tiny.vocabulary == "bpe":
        return _bpe(tiny)
    return _spm(tiny)


def _spm(tiny: Tiny) -> tuple[list[str], list[float], list[int], list[str]]:
    """SentencePiece: the specials, 256 byte tokens, printable characters, scored merges."""
    tokens = list(dict.fromkeys((*tiny.base_tokens, *tiny.specials)))
    types = [2 if t == tiny.unk else 3 for t in tokens]  # UNKNOWN, CONTROL
    scores = [0.0] * len(tokens)
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [6] * 256  # BYTE
    scores += [0.0] * 256
    # Merged pieces are scored above characters, earlier merges higher: llama.cpp merges by
    # score, transformers by the rank it derives (Gemma's: the file order), so both agree.
    for rank, piece in enumerate(SPM_MERGES):
        tokens.append(piece)
        types.append(1)
        scores.append(-float(rank + 1))
    for code in range(0x21, 0x7F):
        tokens.append(chr(code))
        types.append(1)
        scores.append(-1000.0 - code)
    tokens.append("▁")
    types.append(1)
    scores.append(-1000.0)
    return tokens, scores, types, []


def _bpe(tiny: Tiny) -> tuple[list[str], list[float], list[int], list[str]]:
    """Byte-level BPE: the 256 byte characters, a few merges, then the specials."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    alphabet = bytes_to_unicode()
    tokens = [alphabet[b] for b in range(256)]
    merges: list[str] = []
    for piece in ("ĠĠ", "ĠĠĠĠ", "de", "def", "Ġdef", "re", "ret", "retu", "return", "Ġreturn"):
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in tokens and right in tokens:
                merges.append(f"{left} {right}")
                tokens.append(piece)
                break
    specials = [t for t in dict.fromkeys((*tiny.base_tokens, *tiny.specials)) if t not in tokens]
    types = [1] * len(tokens) + [3] * len(specials)
    tokens += specials
    return tokens, [0.0] * len(tokens), types, merges


def _matrix(rng: np.random.Generator, rows: int, cols: int, scale: float = 0.15) -> np.ndarray:
    return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)


def _norm(rng: np.random.Generator, size: int) -> np.ndarray:
    return (1.0 + rng.standard_normal(size) * 0.05).astype(np.float32)


def _vector(rng: np.random.Generator, size: int) -> np.ndarray:
    return (rng.standard_normal(size) * 0.05).astype(np.float32)


def tensors(tiny: Tiny, vocab_size: int, seed: int) -> dict[str, np.ndarray]:
    """Random F32 weights in llama.cpp's names and transformers' (out, in) layout."""
    rng = np.random.default_rng(seed)
    q_rows, kv_rows = tiny.heads * tiny.head_dim, tiny.kv_heads * tiny.head_dim
    out: dict[str, np.ndarray] = {"token_embd.weight": _matrix(rng, vocab_size, HIDDEN, 0.2)}
    layer_norm = tiny.architecture == "starcoder2"
    for b in range(BLOCKS):
        blk = f"blk.{b}"
        out[f"{blk}.attn_norm.weight"] = _norm(rng, HIDDEN)
        out[f"{blk}.ffn_norm.weight"] = _norm(rng, HIDDEN)
        if tiny.architecture == "phi3":
            out[f"{blk}.attn_qkv.weight"] = _matrix(rng, q_rows + 2 * kv_rows, HIDDEN)
            out[f"{blk}.ffn_up.weight"] = _matrix(rng, 2 * FEED_FORWARD, HIDDEN)
        else:
            out[f"{blk}.attn_q.weight"] = _matrix(rng, q_rows, HIDDEN)
            out[f"{blk}.attn_k.weight"] = _matrix(rng, kv_rows, HIDDEN)
            out[f"{blk}.attn_v.weight"] = _matrix(rng, kv_rows, HIDDEN)
            out[f"{blk}.ffn_up.weight"] = _matrix(rng, FEED_FORWARD, HIDDEN)
            if not layer_norm:
                out[f"{blk}.ffn_gate.weight"] = _matrix(rng, FEED_FORWARD, HIDDEN)
        out[f"{blk}.attn_output.weight"] = _matrix(rng, HIDDEN, q_rows)
        out[f"{blk}.ffn_down.weight"] = _matrix(rng, HIDDEN, FEED_FORWARD)
        if tiny.architecture in ("qwen2", "starcoder2"):
            for name, rows in (("attn_q", q_rows), ("attn_k", kv_rows), ("attn_v", kv_rows)):
                out[f"{blk}.{name}.bias"] = _vector(rng, rows)
        if layer_norm:
            out[f"{blk}.attn_norm.bias"] = _vector(rng, HIDDEN)
            out[f"{blk}.ffn_norm.bias"] = _vector(rng, HIDDEN)
            out[f"{blk}.attn_output.bias"] = _vector(rng, HIDDEN)
            out[f"{blk}.ffn_up.bias"] = _vector(rng, FEED_FORWARD)
            out[f"{blk}.ffn_down.bias"] = _vector(rng, HIDDEN)
        if tiny.architecture in ("gemma2", "gemma3"):
            out[f"{blk}.post_attention_norm.weight"] = _norm(rng, HIDDEN)
            out[f"{blk}.post_ffw_norm.weight"] = _norm(rng, HIDDEN)
        if tiny.architecture == "gemma3":
            out[f"{blk}.attn_q_norm.weight"] = _norm(rng, tiny.head_dim)
            out[f"{blk}.attn_k_norm.weight"] = _norm(rng, tiny.head_dim)
    out["output_norm.weight"] = _norm(rng, HIDDEN)
    if layer_norm:
        out["output_norm.bias"] = _vector(rng, HIDDEN)
    if tiny.architecture in ("llama", "qwen2", "phi3"):  # the others tie the output head
        out["output.weight"] = _matrix(rng, vocab_size, HIDDEN, 0.2)
    return out


def write_tiny(tiny: Tiny, path: Path, seed: int = 0) -> Path:
    """Write ``tiny`` as a GGUF file at ``path``."""
    import gguf

    tokens, scores, types, merges = vocabulary(tiny)
    writer = gguf.GGUFWriter(str(path), tiny.architecture)
    writer.add_name(tiny.name or tiny.key)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(BLOCKS)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(tiny.heads)
    writer.add_head_count_kv(tiny.kv_heads)
    writer.add_rope_freq_base(10000.0)
    if tiny.architecture == "starcoder2":
        writer.add_layer_norm_eps(1e-5)
    else:
        writer.add_layer_norm_rms_eps(1e-6)
    if tiny.architecture in ("llama", "phi3"):
        writer.add_rope_dimension_count(tiny.head_dim)
    if tiny.architecture in ("gemma2", "gemma3"):
        writer.add_key_length(tiny.head_dim)
        writer.add_value_length(tiny.head_dim)
        writer.add_sliding_window(4096)  # longer than any test sequence
    if tiny.architecture == "gemma2":
        writer.add_attn_logit_softcapping(50.0)
        writer.add_final_logit_softcapping(30.0)
    writer.add_tokenizer_model("gpt2" if tiny.vocabulary == "bpe" else "llama")
    writer.add_tokenizer_pre(tiny.pre)
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    if merges:
        writer.add_token_merges(merges)
    ids = {token: i for i, token in enumerate(tokens)}
    writer.add_bos_token_id(ids[tiny.bos])
    writer.add_eos_token_id(ids[tiny.eos])
    if tiny.unk:
        writer.add_unk_token_id(ids[tiny.unk])
    if tiny.pad:
        writer.add_pad_token_id(ids[tiny.pad])
    writer.add_add_bos_token(tiny.add_bos)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(tiny.add_space_prefix)
    keys = gguf.Keys.Tokenizer
    roles = {
        "prefix": keys.FIM_PRE_ID,
        "suffix": keys.FIM_SUF_ID,
        "middle": keys.FIM_MID_ID,
        "pad": keys.FIM_PAD_ID,
        "repo": keys.FIM_REP_ID,
        "sep": keys.FIM_SEP_ID,
    }
    for role, token in tiny.fim.items():
        writer.add_uint32(roles[role], ids[token])
    for name, array in tensors(tiny, len(tokens), seed).items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def tiny_models(directory: Path, keys: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Every tiny model (or those of ``keys``), written once into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    everything = {**ARCHS, **EXTRA}
    found: dict[str, Path] = {}
    for key in keys or tuple(everything):
        tiny = everything[key]
        # The name changes with the spec and this module, so no stale file is ever reused.
        source = Path(__file__).read_bytes() + repr(tiny).encode()
        digest = hashlib.sha256(source).hexdigest()[:10]
        path = directory / f"tiny-{key}-{digest}.gguf"
        if not path.exists():
            partial = path.with_suffix(".partial")
            write_tiny(tiny, partial)
            partial.rename(path)
        found[key] = path
    return found


# A tiny repository to distil: every architecture learns the same text examples from it.
FILES = {
    "LICENSE": "MIT License\n\nPermission is hereby granted, free of charge, to any person\n",
    "shop/stock.py": '''"""Stock levels per SKU."""

LEVELS: dict[str, int] = {}


def restock(sku: str, count: int) -> int:
    """Add units of a SKU and return the new level."""
    level = LEVELS.get(sku, 0) + count
    LEVELS[sku] = level
    return level


def take(sku: str, count: int) -> int:
    """Remove units of a SKU and return what is left."""
    level = LEVELS.get(sku, 0) - count
    if level < 0:
        raise ValueError(f"not enough {sku}")
    LEVELS[sku] = level
    return level
''',
    "shop/prices.py": '''"""Prices with tax and discounts."""

TAX_RATE = 0.2


def with_tax(amount: float) -> float:
    """The amount with tax added."""
    total = amount * (1 + TAX_RATE)
    return round(total, 2)


def discounted(amount: float, percent: float) -> float:
    """The amount less a percentage."""
    cut = amount * percent / 100
    return round(amount - cut, 2)
''',
    "shop/report.py": '''"""A stock report."""

from shop.stock import LEVELS


def low_stock(threshold: int) -> list[str]:
    """SKUs whose level is below the threshold."""
    found = [sku for sku, level in LEVELS.items() if level < threshold]
    return sorted(found)


def total_units() -> int:
    """All units in stock."""
    return sum(LEVELS.values())
''',
}


def distill_shop(directory: Path) -> Path:
    """``apprentice distill --teacher none`` of the shop repository; the dataset's path."""
    from lsp.cli import main

    root = directory / "shop-repo"
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    out = directory / "dataset"
    args = ["distill", str(root), "-o", str(out), "--teacher", "none", "--no-tests"]
    assert main([*args, "--per-file", "holes=12,fix=0", "--heldout", "0.5"]) == 0
    return out


def train_args(dataset: Path, base: Path | str, out: Path, steps: int = 8) -> list[str]:
    """``apprentice train``'s arguments for a few steps on a tiny base, learning fast enough
    that the adapter changes llama.cpp's predictions."""
    return [
        "train", str(dataset), "--base", str(base), "-o", str(out), "--steps", str(steps),
        "--rank", "4", "--alpha", "8", "--lr", "5e-2", "--warmup", "1", "--max-tokens", "64",
        "--plain-ratio", "0", "--eval-every", "0", "--heldout-limit", "4", "--threads", "1",
        "--json",
    ]  # fmt: skip
