"""Token ids of a training example in the student's FIM format, laid out as the server prompts.

The prompt is built by ``model.runtime.prompt.build_prompt`` with the student's template and the
base's own tokenizer, so training and serving put the same tokens in the same order:
``<bos> <unused1> suffix <unused0> # Path: file\\n prefix`` then the middle and ``<unused2>``.
Markers are inserted by id; code that contains a marker's text stays text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from model.runtime.api import SpecialToken
from model.runtime.fim import STUDENT_FAMILY, TRAINED_TEMPLATES, FimTemplate
from model.runtime.prompt import PromptInput, build_prompt
from model.training.distill.dataset import Example

STUDENT_TEMPLATE: FimTemplate = TRAINED_TEMPLATES[STUDENT_FAMILY]
END_OF_MIDDLE = STUDENT_TEMPLATE.stop_tokens[0]


@dataclass(frozen=True)
class Encoded:
    """One example's ids; the loss covers ``ids[prompt_len:]`` (the middle and its end)."""

    ids: list[int]
    prompt_len: int


class Tokens:
    """The base tokenizer as the trainer needs it: text to ids, markers to single ids."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.bos: int | None = tokenizer.bos_token_id
        self._markers: dict[str, int] = {}
        for marker in (*STUDENT_TEMPLATE.inserted_markers(), END_OF_MIDDLE):
            ids = tokenizer.convert_tokens_to_ids([marker])
            if len(ids) != 1 or ids[0] is None or ids[0] == tokenizer.unk_token_id:
                raise ValueError(f"the base model's vocabulary has no single token {marker!r}")
            self._markers[marker] = int(ids[0])

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
        """The id of one of the student's markers."""
        return self._markers[marker]

    def prompt(self, parts: Sequence[str | SpecialToken]) -> list[int]:
        """Ids of a built prompt, BOS first (as the llama.cpp worker does)."""
        ids = [self.bos] if self.bos is not None else []
        for part in parts:
            if isinstance(part, SpecialToken):
                ids.append(self.marker(part.text))
            else:
                ids.extend(self.text(part))
        return ids


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
    target = middle + ([tokens.marker(END_OF_MIDDLE)] if ended and not plain else [])
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
            STUDENT_TEMPLATE,
            tokens.count,
            budget,
        )
    prompt = tokens.prompt(built.prompt)
    return Encoded(prompt + target, len(prompt))
