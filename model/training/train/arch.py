"""The architectures ``apprentice train`` takes, and what differs between them.

A base qualifies when transformers loads its GGUF (``gguf_file=``) and llama.cpp applies a
LoRA adapter to it. Per architecture (the GGUF's ``general.architecture``) the table says:

* the gguf-py architecture whose tensor map turns transformers' module names into llama.cpp's
  tensor names (``blk.N.attn_q``), for the adapter's export and for reading one back;
* which transformers module each of the recipe's projection roles (``q_proj`` ...
  ``down_proj``, ``recipe.ALL_PROJECTIONS``) is: Phi-3 fuses q/k/v into ``qkv_proj`` and
  gate/up into ``gate_up_proj``; StarCoder2's MLP is ``c_fc`` (up) and ``c_proj`` (down),
  with no gate;
* whether llama.cpp's converter permuted the rows of ``attn_q`` / ``attn_k`` (llama: it
  interleaves each head's two rotary halves; transformers undoes that when it loads the
  GGUF, so a LoRA B trained in transformers' order must be permuted back on export);
* the trained FIM family that uses the base's reserved tokens, for a base without FIM tokens
  of its own (Gemma's ``<unusedN>``, Phi-3's ``<|placeholderN|>``).

Mistral-family GGUFs (Mistral 7B, Codestral) and DeepSeek-Coder are ``llama`` files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

logger = logging.getLogger(__name__)

# llama.cpp's tensor of each projection role (blk.N.<kind>.weight), where a base has one each.
_KINDS = MappingProxyType(
    {
        "attn_q": ("q_proj",),
        "attn_k": ("k_proj",),
        "attn_v": ("v_proj",),
        "attn_output": ("o_proj",),
        "attn_qkv": ("q_proj", "k_proj", "v_proj"),
        "ffn_gate": ("gate_proj",),
        "ffn_up": ("up_proj",),
        "ffn_down": ("down_proj",),
    }
)
_SAME = MappingProxyType(
    {role: role for role in ("q_proj", "k_proj", "v_proj", "o_proj")}
    | {role: role for role in ("gate_proj", "up_proj", "down_proj")}
)


@dataclass(frozen=True)
class Architecture:
    """What training needs to know about one GGUF architecture."""

    name: str  # general.architecture
    gguf_arch: str  # the gguf.MODEL_ARCH member's name, e.g. "LLAMA"
    models: str  # the model families it covers, for messages
    modules: Mapping[str, str | None] = field(default_factory=lambda: _SAME)
    permuted_qk: bool = False
    reserved_family: str | None = None  # a TRAINED_TEMPLATES family on reserved tokens
    kinds: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: _KINDS)

    def target_modules(self, roles: Iterable[str]) -> tuple[str, ...]:
        """The transformers modules that the recipe's projection ``roles`` name, in order."""
        found = [self.modules.get(role) for role in roles]
        return tuple(dict.fromkeys(m for m in found if m))

    def roles_of(self, kinds: Iterable[str]) -> tuple[str, ...]:
        """The projection roles whose llama.cpp tensors (``attn_q`` ...) an adapter holds."""
        found = {role for kind in kinds for role in self.kinds.get(kind, ())}
        return tuple(role for role in _SAME if role in found)


ARCHITECTURES: Mapping[str, Architecture] = MappingProxyType(
    {
        a.name: a
        for a in (
            Architecture(
                "llama", "LLAMA", "Llama, CodeLlama, DeepSeek-Coder, Mistral", permuted_qk=True
            ),
            Architecture("qwen2", "QWEN2", "Qwen2.5-Coder"),
            Architecture(
                "starcoder2",
                "STARCODER2",
                "StarCoder2",
                modules=MappingProxyType(
                    {**_SAME, "gate_proj": None, "up_proj": "c_fc", "down_proj": "c_proj"}
                ),
            ),
            Architecture("gemma2", "GEMMA2", "Gemma 2", reserved_family="apprentice-gemma2"),
            Architecture(
                "gemma3", "GEMMA3", "Gemma 3, CodeGemma", reserved_family="apprentice-gemma3"
            ),
            Architecture(
                "phi3",
                "PHI3",
                "Phi-3",
                modules=MappingProxyType(
                    {
                        "q_proj": "qkv_proj",
                        "k_proj": "qkv_proj",
                        "v_proj": "qkv_proj",
                        "o_proj": "o_proj",
                        "gate_proj": "gate_up_proj",
                        "up_proj": "gate_up_proj",
                        "down_proj": "down_proj",
                    }
                ),
                reserved_family="apprentice-phi3",
                kinds=MappingProxyType({**_KINDS, "ffn_up": ("gate_proj", "up_proj")}),
            ),
        )
    }
)


def supported() -> str:
    """The supported architectures as one phrase for a refusal."""
    return ", ".join(f"{a.name} ({a.models})" for a in ARCHITECTURES.values())


def architecture(name: str) -> Architecture | None:
    """The table's entry for a GGUF architecture, or None."""
    return ARCHITECTURES.get(name)


def permute_rows(rows: Any, heads: int, *, inverse: bool = False) -> Any:
    """llama.cpp's row order of a q/k projection (``inverse``: transformers' order back).

    llama.cpp's converter reorders each head's rows from [first rotary half, second half]
    to pairs (0, half, 1, half + 1, ...); ``rows`` is a numpy array or torch tensor whose first
    axis is ``heads`` heads of rows, any trailing shape.
    """
    shape = tuple(rows.shape)
    size = shape[0] // heads // 2
    rest = shape[1:]
    split = rows.reshape(heads, size, 2, *rest) if inverse else rows.reshape(heads, 2, size, *rest)
    return split.swapaxes(1, 2).reshape(shape)
