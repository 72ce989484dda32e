"""The trained student's FIM family: chosen only when declared, laid out suffix first."""

from __future__ import annotations

import pytest

from model.runtime.api import ModelInfo, SpecialToken
from model.runtime.fim import STUDENT_FAMILY, all_markers, select_template
from model.runtime.prompt import PromptInput, build_prompt

GEMMA_SPECIALS = frozenset({"<unused0>", "<unused1>", "<unused2>", "<eos>", "<end_of_turn>"})


def gemma(checked: bool = True) -> ModelInfo:
    return ModelInfo(name="gemma", special_tokens=GEMMA_SPECIALS, vocabulary_checked=checked)


def test_never_chosen_from_the_vocabulary_alone() -> None:
    # Every Gemma 3 has <unusedN>: an untrained base must keep prefix-only prompts.
    assert select_template(gemma()) is None


def test_declared_family_is_used_with_its_markers() -> None:
    template = select_template(gemma(), STUDENT_FAMILY)
    assert template is not None
    assert (template.prefix, template.suffix, template.middle) == ("<unused0>", "<unused1>", None)
    assert template.order == "spm"
    assert template.stop_tokens == ("<unused2>", "<eos>")


def test_declared_family_refused_when_the_model_lacks_the_markers() -> None:
    other = ModelInfo(name="other", special_tokens=frozenset({"<eos>"}))
    with pytest.raises(ValueError, match="<unused0>"):
        select_template(other, STUDENT_FAMILY)


def test_markers_are_checked_as_single_tokens_by_backends() -> None:
    assert {"<unused0>", "<unused1>", "<unused2>"} <= all_markers()


def test_prompt_puts_the_suffix_first_and_ends_with_the_prefix() -> None:
    template = select_template(gemma(), STUDENT_FAMILY)
    built = build_prompt(
        PromptInput(path="pkg/mod.py", language="python", prefix="x = f(", suffix=")\ny = 2\n"),
        template,
        lambda text: len(text) // 3 + 1,
        512,
    )
    assert built.mode == "fim"
    assert built.prompt == (
        SpecialToken("<unused1>"),
        ")\ny = 2\n",
        SpecialToken("<unused0>"),
        "# Path: pkg/mod.py\n",
        "x = f(",
    )
    assert SpecialToken("<unused2>") in built.stop_tokens
