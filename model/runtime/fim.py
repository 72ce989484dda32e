"""Fill-in-the-middle templates of the known code-model families, and choosing one for a model."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Literal, Protocol

logger = logging.getLogger(__name__)


class VocabularyInfo(Protocol):
    """What choosing a template reads of a model (``model.runtime.api.ModelInfo`` has it).

    A protocol rather than an import: ``api.ModelInfo`` names ``FimTemplate`` in turn.
    """

    @property
    def name(self) -> str: ...
    @property
    def special_tokens(self) -> frozenset[str]: ...
    @property
    def fim_tokens(self) -> dict[str, str]: ...
    @property
    def vocabulary_checked(self) -> bool: ...
    @property
    def fim_declared(self) -> bool: ...
    @property
    def fim_template(self) -> FimTemplate | None: ...


# SentencePiece vocabularies (CodeLlama) spell some control tokens with a leading word-boundary
# mark, e.g. "▁<PRE>"; llama.cpp reads that spelling from the GGUF.
SP_SPACE = "▁"


@dataclass(frozen=True)
class FimTemplate:
    """The control tokens and layout one model family was trained with for FIM.

    ``order`` is ``psm`` (prefix, suffix, middle) or ``spm`` (suffix first, Codestral).
    ``middle`` is None for families that generate right after the prefix. ``file_sep`` and
    ``repo_name`` enable repository-level context (``repo_layout`` says which training format);
    ``stop_tokens`` end a middle. ``spaced`` is CodeLlama's ``<PRE> {prefix} <SUF>{suffix} <MID>``.
    """

    family: str
    prefix: str
    suffix: str
    middle: str | None
    order: Literal["psm", "spm"] = "psm"
    file_sep: str | None = None
    repo_name: str | None = None
    stop_tokens: tuple[str, ...] = ()
    spaced: bool = False
    repo_layout: Literal["qwen", "starcoder2"] = "qwen"

    def inserted_markers(self) -> tuple[str, ...]:
        """The markers a prompt of this template puts in (each must be one token)."""
        optional = (self.middle, self.file_sep, self.repo_name)
        return (self.prefix, self.suffix, *(m for m in optional if m))

    def spellings(self, marker: str) -> tuple[str, ...]:
        """The vocabulary spellings this family's ``marker`` may have."""
        return (marker, SP_SPACE + marker) if self.spaced else (marker,)


def _known(*templates: FimTemplate) -> Mapping[str, FimTemplate]:
    return MappingProxyType({t.family: t for t in templates})


# Marker strings as published by the model authors and used by llama.cpp / Continue.
# Order matters: on a tie the earlier family wins (Qwen and CodeGemma share their FIM markers).
KNOWN_TEMPLATES: Mapping[str, FimTemplate] = _known(
    FimTemplate(
        family="qwen2.5-coder",
        prefix="<|fim_prefix|>",
        suffix="<|fim_suffix|>",
        middle="<|fim_middle|>",
        file_sep="<|file_sep|>",
        repo_name="<|repo_name|>",
        stop_tokens=("<|endoftext|>", "<|fim_pad|>", "<|file_sep|>", "<|im_end|>"),
    ),
    FimTemplate(
        family="codegemma",
        prefix="<|fim_prefix|>",
        suffix="<|fim_suffix|>",
        middle="<|fim_middle|>",
        stop_tokens=("<|file_separator|>", "<end_of_turn>", "<eos>"),
    ),
    FimTemplate(
        family="starcoder2",
        prefix="<fim_prefix>",
        suffix="<fim_suffix>",
        middle="<fim_middle>",
        file_sep="<file_sep>",
        repo_name="<repo_name>",
        stop_tokens=("<|endoftext|>", "<file_sep>"),
        repo_layout="starcoder2",
    ),
    FimTemplate(
        family="starcoder",
        prefix="<fim_prefix>",
        suffix="<fim_suffix>",
        middle="<fim_middle>",
        stop_tokens=("<|endoftext|>",),
    ),
    FimTemplate(
        family="deepseek-coder",
        prefix="<｜fim▁begin｜>",
        suffix="<｜fim▁hole｜>",
        middle="<｜fim▁end｜>",
        stop_tokens=("<｜end▁of▁sentence｜>", "<|EOT|>"),
    ),
    FimTemplate(
        family="codellama",
        prefix="<PRE>",
        suffix="<SUF>",
        middle="<MID>",
        stop_tokens=("<EOT>",),
        spaced=True,
    ),
    FimTemplate(
        family="codestral",
        prefix="[PREFIX]",
        suffix="[SUFFIX]",
        middle=None,
        order="spm",
        stop_tokens=("</s>",),
    ),
)

# Families taught by ``apprentice train`` on a base's reserved tokens, for bases without FIM
# tokens of their own: never chosen from a vocabulary alone (Gemma's ``<unusedN>`` tokens
# exist in every Gemma, trained or not), only when a checkpoint declares its family
# (``completion.fimTemplate``). Suffix first, then the prefix, and the middle continues the
# prefix as plain left-to-right text; the first stop token ends the middle.
STUDENT_FAMILY = "apprentice-gemma3"


def _reserved(family: str, prefix: str, suffix: str, end: str, eos: str) -> FimTemplate:
    return FimTemplate(
        family=family,
        prefix=prefix,
        suffix=suffix,
        middle=None,
        order="spm",
        stop_tokens=(end, eos),
    )


TRAINED_TEMPLATES: Mapping[str, FimTemplate] = _known(
    _reserved(STUDENT_FAMILY, "<unused0>", "<unused1>", "<unused2>", "<eos>"),
    _reserved("apprentice-gemma2", "<unused0>", "<unused1>", "<unused2>", "<eos>"),
    _reserved(
        "apprentice-phi3",
        "<|placeholder1|>",
        "<|placeholder2|>",
        "<|placeholder3|>",
        "<|endoftext|>",
    ),
)

_ALIASES: Mapping[str, str] = MappingProxyType(
    {"qwen": "qwen2.5-coder", "qwen2.5": "qwen2.5-coder", "deepseek": "deepseek-coder"}
)
_PREFIX_ONLY = frozenset({"none", "off", "prefix"})
_AUTO = frozenset({"", "auto"})


def all_markers() -> frozenset[str]:
    """Every marker string of every known family, for the backend to check as single tokens."""
    found: set[str] = set()
    for template in (*KNOWN_TEMPLATES.values(), *TRAINED_TEMPLATES.values()):
        for marker in (*template.inserted_markers(), *template.stop_tokens):
            found.update(template.spellings(marker))
    return frozenset(found)


def canonical_family(name: str) -> str:
    """A family name as ``KNOWN_TEMPLATES`` keys it (aliases such as ``qwen`` resolved)."""
    name = name.strip().lower()
    return _ALIASES.get(name, name)


def family_template(name: str) -> FimTemplate | None:
    """The template of a known or trained family by name (aliases allowed), else None."""
    family = canonical_family(name)
    return KNOWN_TEMPLATES.get(family) or TRAINED_TEMPLATES.get(family)


def select_template(info: VocabularyInfo, override: str | None = None) -> FimTemplate | None:
    """The FIM template for ``info`` (None: prefix-only prompts); ``override`` forces a family.

    Without an override, a template the model's checkpoint declares wins over detection.
    """
    available = info.special_tokens | {v for v in info.fim_tokens.values() if v}
    if override is not None and override.strip().lower() not in _AUTO:
        return _forced(info, override.strip().lower(), available)
    if info.fim_declared:
        return _declared(info, available)
    fim = info.fim_tokens
    if all(fim.get(role) for role in ("prefix", "suffix", "middle")):
        # The GGUF names the model's own FIM tokens: prefer a family that uses exactly those,
        # for its stop tokens and context layout; otherwise build a template from them alone.
        matching = [
            t
            for t in KNOWN_TEMPLATES.values()
            if t.middle is not None
            and fim["prefix"] in t.spellings(t.prefix)
            and fim["suffix"] in t.spellings(t.suffix)
            and fim["middle"] in t.spellings(t.middle)
        ]
        chosen = _best(matching, available)
        if chosen is not None:
            return chosen
        return _from_gguf(info)
    return _best(KNOWN_TEMPLATES.values(), available)


def _forced(info: VocabularyInfo, name: str, available: frozenset[str]) -> FimTemplate | None:
    if name in _PREFIX_ONLY:
        return None
    family = _ALIASES.get(name, name)
    template = KNOWN_TEMPLATES.get(family) or TRAINED_TEMPLATES.get(family)
    if template is None:
        known = ", ".join([*KNOWN_TEMPLATES, *TRAINED_TEMPLATES, "none"])
        raise ValueError(f"unknown FIM template {name!r}; choose one of: {known}")
    if not info.vocabulary_checked:
        return template  # a remote model: the configuration is all we know
    resolved = _resolve(template, available)
    if resolved is None or len(resolved.inserted_markers()) < len(template.inserted_markers()):
        missing = [
            m
            for m in template.inserted_markers()
            if not any(s in available for s in template.spellings(m))
        ]
        raise ValueError(
            f"FIM template {template.family!r} does not fit model {info.name!r}: "
            f"its tokenizer lacks {', '.join(missing)} as single tokens"
        )
    return resolved


def _declared(info: VocabularyInfo, available: frozenset[str]) -> FimTemplate | None:
    """A checkpoint's template, its markers checked as single tokens where that is known."""
    template = info.fim_template
    if template is None or not info.vocabulary_checked:
        return template
    needed = (template.prefix, template.suffix, template.middle)
    missing = [m for m in needed if m is not None and m not in available]
    if missing:
        raise ValueError(
            f"the checkpoint's FIM template does not fit model {info.name!r}: "
            f"its tokenizer lacks {', '.join(missing)} as single tokens"
        )
    file_sep = template.file_sep if template.file_sep in available else None
    return replace(
        template,
        file_sep=file_sep,
        repo_name=template.repo_name if file_sep and template.repo_name in available else None,
        stop_tokens=tuple(t for t in template.stop_tokens if t in available),
    )


def _best(candidates: Iterable[FimTemplate], available: frozenset[str]) -> FimTemplate | None:
    """The candidate whose FIM markers the model has, scored by its other markers present."""
    best: FimTemplate | None = None
    best_score = (-1, 0)
    for template in candidates:
        resolved = _resolve(template, available)
        if resolved is None:
            continue
        # Markers beyond the FIM three tell apart families that share those (Qwen/CodeGemma,
        # StarCoder/StarCoder2): most markers present wins, then fewest missing.
        extras = [m for m in (template.file_sep, template.repo_name, *template.stop_tokens) if m]
        hits = sum(1 for m in extras if any(s in available for s in template.spellings(m)))
        score = (hits, hits - len(extras))
        if score > best_score:
            best, best_score = resolved, score
    if best is not None:
        logger.debug("FIM template %s chosen", best.family)
    return best


def _resolve(template: FimTemplate, available: frozenset[str]) -> FimTemplate | None:
    """``template`` spelled as the model's vocabulary spells it; None without its FIM markers.

    Repository markers the model lacks are dropped (plain FIM still works), as are stop
    tokens it lacks (a backend can only stop on tokens that exist).
    """

    def pick(marker: str | None) -> str | None:
        if marker is None:
            return None
        return next((s for s in template.spellings(marker) if s in available), None)

    prefix, suffix, middle = pick(template.prefix), pick(template.suffix), pick(template.middle)
    if prefix is None or suffix is None or (template.middle is not None and middle is None):
        return None
    file_sep = pick(template.file_sep)
    repo_name = pick(template.repo_name) if file_sep else None
    stops = tuple(s for s in (pick(m) for m in template.stop_tokens) if s)
    return replace(
        template,
        prefix=prefix,
        suffix=suffix,
        middle=middle,
        file_sep=file_sep,
        repo_name=repo_name,
        stop_tokens=stops,
    )


def _from_gguf(info: VocabularyInfo) -> FimTemplate:
    """A psm template from the FIM tokens llama.cpp read from an unknown model's GGUF."""
    fim = info.fim_tokens
    sep = fim.get("sep") or None
    stops = tuple(dict.fromkeys(t for t in (fim.get("pad"), sep) if t))
    logger.debug("FIM template built from the GGUF's tokens for %s", info.name)
    return FimTemplate(
        family="gguf",
        prefix=fim["prefix"],
        suffix=fim["suffix"],
        middle=fim["middle"],
        file_sep=sep,
        repo_name=(fim.get("repo") or None) if sep else None,
        stop_tokens=stops,
    )


class TemplateChoice:
    """The FIM template of whichever model a backend serves, chosen once per model."""

    def __init__(self, override: str | None = None) -> None:
        self.override = override
        self._chosen: tuple[VocabularyInfo, FimTemplate | None] | None = None

    def for_model(self, info: VocabularyInfo) -> FimTemplate | None:
        """The template for ``info`` (None: prefix-only), remembered until the model changes."""
        if self._chosen is None or self._chosen[0] != info:
            self._chosen = (info, select_template(info, self.override))
        return self._chosen[1]
