"""FIM template table and choosing a template from what the backend knows about its model."""

from __future__ import annotations

import pytest

from model.runtime.api import ModelInfo
from model.runtime.fim import KNOWN_TEMPLATES, FimTemplate, all_markers, select_template

QWEN_SPECIALS = frozenset(
    {
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        "<|fim_pad|>",
        "<|repo_name|>",
        "<|file_sep|>",
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
    }
)
QWEN_FIM = {
    "prefix": "<|fim_prefix|>",
    "suffix": "<|fim_suffix|>",
    "middle": "<|fim_middle|>",
    "pad": "<|fim_pad|>",
    "repo": "<|repo_name|>",
    "sep": "<|file_sep|>",
}
CODEGEMMA_SPECIALS = frozenset(
    {
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        "<|file_separator|>",
        "<end_of_turn>",
        "<eos>",
    }
)
STARCODER2_SPECIALS = frozenset(
    {"<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<file_sep>", "<repo_name>", "<|endoftext|>"}
)
STARCODER_SPECIALS = frozenset({"<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<|endoftext|>"})
DEEPSEEK_SPECIALS = frozenset(
    {"<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "<｜end▁of▁sentence｜>", "<|EOT|>"}
)
CODESTRAL_SPECIALS = frozenset({"[PREFIX]", "[SUFFIX]", "[MIDDLE]", "</s>"})
GEMMA3_SPECIALS = frozenset({"<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"})


def info(specials: frozenset[str] = frozenset(), fim: dict[str, str] | None = None) -> ModelInfo:
    return ModelInfo(name="test-model", special_tokens=specials, fim_tokens=dict(fim or {}))


def test_table_has_the_required_families() -> None:
    assert {
        "qwen2.5-coder",
        "starcoder",
        "starcoder2",
        "deepseek-coder",
        "codellama",
        "codestral",
        "codegemma",
    } <= set(KNOWN_TEMPLATES)
    for family, template in KNOWN_TEMPLATES.items():
        assert template.family == family
        assert template.stop_tokens, family


def test_deepseek_markers_use_full_width_bars_and_sentencepiece_space() -> None:
    template = KNOWN_TEMPLATES["deepseek-coder"]
    assert template.prefix == "<\uff5cfim\u2581begin\uff5c>"
    assert template.suffix == "<\uff5cfim\u2581hole\uff5c>"
    assert template.middle == "<\uff5cfim\u2581end\uff5c>"
    assert "<\uff5cend\u2581of\u2581sentence\uff5c>" in template.stop_tokens
    assert "<|EOT|>" in template.stop_tokens


def test_codestral_is_suffix_first_without_middle() -> None:
    template = KNOWN_TEMPLATES["codestral"]
    assert (template.order, template.prefix, template.suffix) == ("spm", "[PREFIX]", "[SUFFIX]")
    assert template.middle is None
    assert template.stop_tokens == ("</s>",)


def test_repo_markers() -> None:
    qwen = KNOWN_TEMPLATES["qwen2.5-coder"]
    assert (qwen.repo_name, qwen.file_sep) == ("<|repo_name|>", "<|file_sep|>")
    assert set(qwen.stop_tokens) == {"<|endoftext|>", "<|fim_pad|>", "<|file_sep|>", "<|im_end|>"}
    sc2 = KNOWN_TEMPLATES["starcoder2"]
    assert (sc2.repo_name, sc2.file_sep, sc2.repo_layout) == (
        "<repo_name>",
        "<file_sep>",
        "starcoder2",
    )
    assert KNOWN_TEMPLATES["starcoder"].file_sep is None
    assert KNOWN_TEMPLATES["codegemma"].stop_tokens == (
        "<|file_separator|>",
        "<end_of_turn>",
        "<eos>",
    )


def test_all_markers_covers_every_family_and_sentencepiece_spellings() -> None:
    markers = all_markers()
    for template in KNOWN_TEMPLATES.values():
        assert set(template.inserted_markers()) <= markers
        assert set(template.stop_tokens) <= markers
    assert {"▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>", "<|file_separator|>", "[SUFFIX]"} <= markers
    assert isinstance(markers, frozenset)


@pytest.mark.parametrize(
    ("specials", "fim", "family"),
    [
        (QWEN_SPECIALS, QWEN_FIM, "qwen2.5-coder"),
        (QWEN_SPECIALS, {}, "qwen2.5-coder"),
        (
            CODEGEMMA_SPECIALS,
            {"prefix": "<|fim_prefix|>", "suffix": "<|fim_suffix|>", "middle": "<|fim_middle|>"},
            "codegemma",
        ),
        (CODEGEMMA_SPECIALS, {}, "codegemma"),
        (STARCODER2_SPECIALS, {}, "starcoder2"),
        (
            STARCODER2_SPECIALS,
            {"prefix": "<fim_prefix>", "suffix": "<fim_suffix>", "middle": "<fim_middle>"},
            "starcoder2",
        ),
        (STARCODER_SPECIALS, {}, "starcoder"),
        (DEEPSEEK_SPECIALS, {}, "deepseek-coder"),
        (
            DEEPSEEK_SPECIALS,
            {"prefix": "<｜fim▁begin｜>", "suffix": "<｜fim▁hole｜>", "middle": "<｜fim▁end｜>"},
            "deepseek-coder",
        ),
        (frozenset({"<PRE>", "<SUF>", "<MID>", "<EOT>"}), {}, "codellama"),
        (CODESTRAL_SPECIALS, {}, "codestral"),
    ],
)
def test_select_template_per_family(
    specials: frozenset[str], fim: dict[str, str], family: str
) -> None:
    template = select_template(info(specials, fim))
    assert template is not None
    assert template.family == family


def test_gemma_like_model_without_fim_gets_prefix_only() -> None:
    assert select_template(info(GEMMA3_SPECIALS)) is None
    assert select_template(info()) is None


def test_partial_fim_markers_are_not_enough() -> None:
    assert select_template(info(frozenset({"<|fim_prefix|>", "<|fim_suffix|>"}))) is None


def test_codellama_gguf_spelling_is_kept() -> None:
    fim = {"prefix": "▁<PRE>", "suffix": "▁<SUF>", "middle": "▁<MID>"}
    template = select_template(info(frozenset({*fim.values(), "▁<EOT>"}), fim))
    assert template is not None
    assert template.family == "codellama"
    assert (template.prefix, template.suffix, template.middle) == ("▁<PRE>", "▁<SUF>", "▁<MID>")
    assert template.stop_tokens == ("▁<EOT>",)
    assert template.spaced


def test_unknown_gguf_fim_tokens_build_a_generic_template() -> None:
    fim = {
        "prefix": "<fim-prefix>",
        "suffix": "<fim-suffix>",
        "middle": "<fim-middle>",
        "pad": "<fim-pad>",
    }
    template = select_template(info(frozenset(), fim))
    assert template == FimTemplate(
        family="gguf",
        prefix="<fim-prefix>",
        suffix="<fim-suffix>",
        middle="<fim-middle>",
        stop_tokens=("<fim-pad>",),
    )


def test_generic_template_keeps_gguf_repo_tokens() -> None:
    fim = {
        "prefix": "<|code_prefix|>",
        "suffix": "<|code_suffix|>",
        "middle": "<|code_middle|>",
        "sep": "<|sep|>",
        "repo": "<|repo|>",
    }
    template = select_template(info(frozenset(), fim))
    assert template is not None
    assert (template.family, template.file_sep, template.repo_name) == (
        "gguf",
        "<|sep|>",
        "<|repo|>",
    )
    assert template.stop_tokens == ("<|sep|>",)


def test_missing_repo_markers_are_dropped_in_auto_selection() -> None:
    specials = frozenset({"<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|endoftext|>"})
    template = select_template(info(specials))
    assert template is not None
    assert template.file_sep is None and template.repo_name is None
    # Stop tokens the model lacks cannot be stopped on.
    assert template.stop_tokens == ("<|endoftext|>",)


def test_override_none_forces_prefix_only() -> None:
    assert select_template(info(QWEN_SPECIALS, QWEN_FIM), "none") is None
    assert select_template(info(QWEN_SPECIALS, QWEN_FIM), " None ") is None


def test_override_auto_and_empty_mean_automatic() -> None:
    for override in ("auto", ""):
        template = select_template(info(QWEN_SPECIALS, QWEN_FIM), override)
        assert template is not None and template.family == "qwen2.5-coder"


def test_override_family_and_alias() -> None:
    # CodeGemma and Qwen share FIM markers; the user may insist on one of them.
    template = select_template(info(QWEN_SPECIALS | CODEGEMMA_SPECIALS), "codegemma")
    assert template is not None and template.family == "codegemma"
    template = select_template(info(QWEN_SPECIALS), "qwen")
    assert template is not None and template.family == "qwen2.5-coder"


def test_override_with_markers_the_model_lacks_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"'starcoder2' does not fit model 'test-model'.*<fim_"):
        select_template(info(QWEN_SPECIALS, QWEN_FIM), "starcoder2")
    with pytest.raises(ValueError, match="<repo_name>"):
        select_template(info(STARCODER_SPECIALS), "starcoder2")


def test_unknown_override_lists_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown FIM template 'mistral'.*qwen2\.5-coder.*none"):
        select_template(info(QWEN_SPECIALS), "mistral")


def test_override_is_trusted_when_the_vocabulary_is_out_of_reach() -> None:
    remote = ModelInfo(name="served-model", vocabulary_checked=False)
    template = select_template(remote, "qwen2.5-coder")
    assert template is not None and template.prefix == "<|fim_prefix|>"
    assert select_template(remote) is None  # nothing configured: prefix-only
