"""Token ids of a training example in the base's FIM layout, laid out as the server prompts.

The layout is chosen for the base as the server chooses a template for that GGUF
(``choose_layout``): a base with FIM tokens of its own is trained in its family's layout
(Qwen's, StarCoder2's, CodeLlama's ..., its order and markers); a base without them is
taught the apprentice layout on its reserved tokens (Gemma's ``<unusedN>``, Phi-3's
``<|placeholderN|>``: suffix first, then the prefix, the middle continuing it); a base with
neither is refused. The middle ends with the family's first stop token, a single token.

The prompt is built by ``model.runtime.prompt.build_prompt`` with that template and the
base's own tokenizer, so training and serving put the same tokens in the same order, e.g.
``<bos> <unused1> suffix <unused0> # Path: file\\n prefix`` then the middle and
``<unused2>``. Markers are inserted by id; code that contains a marker's text stays text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from model.runtime.api import ModelInfo, SpecialToken
from model.runtime.fim import (
    KNOWN_TEMPLATES,
    STUDENT_FAMILY,
    TRAINED_TEMPLATES,
    FimTemplate,
    select_template,
)
from model.runtime.gguf import GgufInfo
from model.runtime.prompt import PromptInput, build_prompt
from model.training.distill.dataset import Example


@dataclass(frozen=True)
class Layout:
    """The FIM layout a base is trained in: its template, the middle's end, and BOS."""

    template: FimTemplate
    end: str  # the single token that ends a middle: the template's first stop token
    add_bos: bool = True  # whether llama.cpp starts a prompt with BOS for this base
    bos_id: int | None = None  # the GGUF's BOS id (None: the tokenizer's)

    @property
    def family(self) -> str:
        """The FIM family's name (``qwen2.5-coder``, ``apprentice-gemma3``, ``gguf`` ...)."""
        return self.template.family

    def pack_fim(self) -> str:
        """``pack_checkpoint``'s ``fim=``: the family, or its markers for one without a name."""
        if self.family in KNOWN_TEMPLATES or self.family in TRAINED_TEMPLATES:
            return self.family
        markers = [self.template.prefix, self.template.suffix]
        markers += [self.template.middle] if self.template.middle else []
        return f"{self.template.order}:{','.join(markers)}"


STUDENT_TEMPLATE: FimTemplate = TRAINED_TEMPLATES[STUDENT_FAMILY]
STUDENT_LAYOUT = Layout(STUDENT_TEMPLATE, STUDENT_TEMPLATE.stop_tokens[0])
END_OF_MIDDLE = STUDENT_LAYOUT.end


class LayoutError(ValueError):
    """A base has no FIM layout it can be trained in (one line: the base and the reason)."""


def choose_layout(info: GgufInfo, reserved_family: str | None) -> Layout:
    """The layout to train the base ``info`` describes (read with ``fim.all_markers()``).

    ``reserved_family`` is the architecture's trained family on reserved tokens, if any.
    """
    model = ModelInfo(
        name=info.name, special_tokens=info.known_fim_markers, fim_tokens=dict(info.fim_tokens)
    )
    template = select_template(model)
    if template is None and reserved_family is not None:
        reserved = TRAINED_TEMPLATES[reserved_family]
        needed = (*reserved.inserted_markers(), reserved.stop_tokens[0])
        if all(marker in info.known_fim_markers for marker in needed):
            stops = tuple(t for t in reserved.stop_tokens if t in info.known_fim_markers)
            template = replace(reserved, stop_tokens=stops)
    if template is None:
        if reserved_family:
            markers = ", ".join(TRAINED_TEMPLATES[reserved_family].inserted_markers())
            why = f"it lacks the reserved tokens ({markers}) one is taught on"
        else:
            why = f"{info.architecture or 'its'} bases have no reserved tokens to teach one on"
        raise LayoutError(
            f"{info.path.name}: no FIM layout to train in: the base has no FIM tokens of its "
            f"own and {why}; train a code model with FIM tokens"
        )
    if not template.stop_tokens:
        raise LayoutError(
            f"{info.path.name}: its FIM layout ({template.family}) has no stop token in its "
            "vocabulary, so a trained middle could not end"
        )
    bos = info.metadata.get("tokenizer.ggml.bos_token_id")
    return Layout(
        template,
        template.stop_tokens[0],
        add_bos=adds_bos(info),
        bos_id=bos if isinstance(bos, int) and not isinstance(bos, bool) else None,
    )


def adds_bos(info: GgufInfo) -> bool:
    """Whether llama.cpp starts this base's prompts with BOS: the GGUF's flag, else its
    default (SentencePiece vocabularies add it, byte-level BPE ones do not)."""
    flag = info.metadata.get("tokenizer.ggml.add_bos_token")
    if isinstance(flag, bool):
        return flag
    return info.metadata.get("tokenizer.ggml.model") == "llama"


@dataclass(frozen=True)
class Encoded:
    """One example's ids; the loss covers ``ids[prompt_len:]`` (the middle and its end)."""

    ids: list[int]
    prompt_len: int


class Tokens:
    """The base tokenizer as the trainer needs it: text to ids, markers to single ids."""

    def __init__(
        self,
        tokenizer: Any,
        layout: Layout = STUDENT_LAYOUT,
        vocabulary_ids: dict[str, int] | None = None,
    ) -> None:
        """``vocabulary_ids``: the markers' ids in the GGUF (``GgufInfo.marker_ids``)."""
        self.tokenizer = tokenizer
        self.layout = layout
        bos = layout.bos_id if layout.bos_id is not None else tokenizer.bos_token_id
        self.bos: int | None = bos if layout.add_bos else None
        self._markers = {
            marker: _marker_id(tokenizer, marker, vocabulary_ids or {})
            for marker in (*layout.template.inserted_markers(), layout.end)
        }

    def text(self, text: str) -> list[int]:
        """Ids of plain text (no special-token parsing, no BOS)."""
        if not text:
            return []
        return list(
            self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
        )

    def count(self, text: str) -> int:
        """Tokens ``text`` takes."""
        return len(self.text(text))

    def marker(self, marker: str) -> int:
        """The id of one of the layout's markers."""
        return self._markers[marker]

    def prompt(self, parts: Sequence[str | SpecialToken]) -> list[int]:
        """Ids of a built prompt, BOS first where the base adds one (as llama.cpp's worker does)."""
        ids = [self.bos] if self.bos is not None else []
        for part in parts:
            if isinstance(part, SpecialToken):
                ids.append(self.marker(part.text))
            else:
                ids.extend(self.text(part))
        return ids


def _marker_id(tokenizer: Any, marker: str, vocabulary_ids: dict[str, int]) -> int:
    """The single id of ``marker``: the GGUF's where known (the row both torch and llama.cpp
    embed; transformers respells some markers, e.g. DeepSeek's ``<｜fim▁begin｜>``, or adds
    them past the vocabulary), else the tokenizer's."""
    known = vocabulary_ids.get(marker)
    if known is not None:
        return known
    ids = tokenizer.convert_tokens_to_ids([marker])
    if len(ids) != 1 or ids[0] is None or ids[0] == tokenizer.unk_token_id:
        raise ValueError(f"the base model's vocabulary has no single token {marker!r}")
    return int(ids[0])


def encode(
    example: Example,
    tokens: Tokens,
    max_tokens: int,
    *,
    max_middle: int = 128,
    plain: bool = False,
) -> Encoded:
    """``example`` as ids within ``max_tokens``; ``plain`` drops the suffix and the markers.

    A plain example is left-to-right text (``prefix`` then ``middle``), which keeps the
    base's ordinary completion ability while the FIM layout is taught.
    """
    middle = tokens.text(example.middle)
    ended = len(middle) < max_middle
    middle = middle[: max_middle - 1] if not ended else middle
    target = middle + ([tokens.marker(tokens.layout.end)] if ended and not plain else [])
    budget = max(8, max_tokens - len(target) - 1)
    if plain:
        built = build_prompt(
            PromptInput(example.path, example.language, example.prefix, ""),
            None,
            tokens.count,
            budget,
        )
    else:
        built = build_prompt(
            PromptInput(example.path, example.language, example.prefix, example.suffix),
            tokens.layout.template,
            tokens.count,
            budget,
        )
    prompt = tokens.prompt(built.prompt)
    return Encoded(prompt + target, len(prompt))
