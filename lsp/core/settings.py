"""The server's settings: one typed, fully defaulted schema, read from camelCase JSON.

Settings arrive as ``initializationOptions`` and in ``workspace/didChangeConfiguration``
(either bare or under an ``apprentice`` key, as VS Code sends them). A bad value never
stops the server: it is reported once, and that field keeps its default.
"""

from __future__ import annotations

import logging
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from types import UnionType
from typing import Any

import cattrs
from cattrs.gen import make_dict_structure_fn, override

logger = logging.getLogger(__name__)

LOG_LEVELS = ("debug", "info", "warning", "error")
# Languages the completion pipeline serves by default: those with a tree-sitter grammar.
DEFAULT_LANGUAGES = (
    "python",
    "javascript",
    "typescript",
    "tsx",
    "go",
    "rust",
    "java",
    "c",
    "cpp",
)


@dataclass(frozen=True)
class ModelSettings:
    """Which model answers: the embedded default, a checkpoint, a GGUF (plus LoRA), or a remote.

    ``path`` names a GGUF, a checkpoint directory, an installed ``NAME[@VERSION]``, ``base``
    (the embedded model alone) or ``student`` (the shipped student on it). With
    ``require_signature``, only checkpoints signed by one of ``trusted_keys`` (``.pub`` paths
    or key lines) load; a signature that does not match its manifest is refused always.
    """

    path: str | None = None
    lora: str | None = None
    remote_url: str | None = None
    remote_model: str | None = None
    context_length: int = 4096
    threads: int | None = None
    gpu_layers: int = 0
    require_signature: bool = False
    trusted_keys: tuple[str, ...] = ()
    # Memory for KV snapshots of recent files' prompts (LRU; 0: none): going back to a
    # file then evaluates only what changed (about 18 MB per 1,000 tokens of Gemma 3 270M).
    snapshot_memory_mb: int = 256


@dataclass(frozen=True)
class CompletionSettings:
    """How suggestions are made and how fast."""

    debounce_ms: int = 25
    context_budget: int = 1024
    max_tokens: int = 32
    max_tokens_multiline: int = 96
    candidates: int = 2
    # From here on, the complete lines of a generation are shown as soon as they verify
    # (llama.vim caps its first request at 250 ms; Continue shows what it has at 300 ms);
    # a line is never cut short ...
    time_budget_ms: int = 150
    # ... and (0: never) an automatic request gives up here. Off by default: the editor
    # cancels the request on the next keystroke, so a give-up only hits a person who
    # stopped typing and waits for the answer (a cold prompt takes 1-6 s on a laptop CPU).
    max_wait_ms: int = 0
    # The most any request (an explicit one too) may take before generation stops.
    timeout_ms: int = 10000
    multiline: bool = True
    fim_template: str | None = None
    # Show or hold (0..1; 0: always show): an automatic suggestion whose probability of being
    # right (lsp.core.confidence, calibrated on held-out standard-library holes) is below
    # this is not shown; explicit requests always show their best candidate. The default is
    # the operating point the calibration data chose (the shipped weights name it).
    min_confidence: float = 0.1


@dataclass(frozen=True)
class VerifySettings:
    """Which checks a candidate must pass before it is shown."""

    syntax: bool = True
    ruff: bool = True
    symbols: bool = True


@dataclass(frozen=True)
class IndexSettingsSchema:
    """Background indexing of the workspace."""

    enabled: bool = True
    location: str | None = None
    embeddings: bool = True


@dataclass(frozen=True)
class ServerSettings:
    """Everything the server can be told; ``ServerSettings()`` is a working configuration."""

    model: ModelSettings = field(default_factory=ModelSettings)
    completion: CompletionSettings = field(default_factory=CompletionSettings)
    verify: VerifySettings = field(default_factory=VerifySettings)
    index: IndexSettingsSchema = field(default_factory=IndexSettingsSchema)
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    log_level: str = "info"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    for cls in (ModelSettings, CompletionSettings, VerifySettings, IndexSettingsSchema):
        renames: dict[str, Any] = {f.name: override(rename=_camel(f.name)) for f in fields(cls)}
        hook = make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True, **renames)
        converter.register_structure_hook(cls, hook)
    return converter


_CONVERTER = _converter()


def _describe(error: BaseException) -> str:
    if isinstance(error, cattrs.ForbiddenExtraKeysError):
        return "unknown key(s) " + ", ".join(sorted(error.extra_fields))
    if isinstance(error, cattrs.BaseValidationError):
        return "; ".join(_describe(inner) for inner in error.exceptions)
    return str(error) or type(error).__name__


def _accepts(annotation: Any, value: object) -> bool:
    """Whether ``value`` has the field's JSON type (cattrs alone turns "3" into 3, 1 into True)."""
    options = typing.get_args(annotation) if typing.get_origin(annotation) is UnionType else ()
    for option in options or (annotation,):
        if option is type(None) and value is None:
            return True
        if option is bool and isinstance(value, bool):
            return True
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return True
        if option is str and isinstance(value, str):
            return True
        if option == tuple[str, ...] and isinstance(value, list):
            return all(isinstance(item, str) for item in value)
    return False


def _section(cls: type, raw: object, where: str, problems: list[str]) -> Any:
    """One settings group: each good field kept, each bad one reported and defaulted."""
    default = cls()
    if raw is None:
        return default
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected an object, got {type(raw).__name__}")
        return default
    by_key = {_camel(f.name): f for f in fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in by_key:
            problems.append(f"{where}.{key}: unknown setting")
    values: dict[str, Any] = {}
    for key, spec in by_key.items():
        if key not in raw:
            continue
        value = raw[key]
        annotation = hints[spec.name]
        if not _accepts(annotation, value):
            expected = getattr(annotation, "__name__", None) or str(annotation)
            if annotation == tuple[str, ...]:
                expected = "a list of strings"
            if annotation is float:
                expected = "a number from 0 to 1"
            problems.append(f"{where}.{key}: expected {expected}, got {value!r}")
            continue
        try:
            structured: Any = _CONVERTER.structure({key: value}, cls)
        except (cattrs.BaseValidationError, ValueError, TypeError) as error:
            problems.append(f"{where}.{key}: {_describe(error)}")
            continue
        values[spec.name] = getattr(structured, spec.name)
    settings = replace(default, **values)
    return _validated(settings, where, problems)


def _validated(settings: Any, where: str, problems: list[str]) -> Any:
    """Range checks that types cannot express; an out-of-range value keeps its default."""
    default = type(settings)()
    changes: dict[str, Any] = {}
    for spec in fields(settings):
        value = getattr(settings, spec.name)
        bad = isinstance(value, int) and not isinstance(value, bool) and value < 0
        if spec.name in ("candidates", "context_length", "max_tokens", "max_tokens_multiline"):
            bad = bad or value < 1
        if isinstance(value, float):
            bad = not 0.0 <= value <= 1.0  # the only float settings are probabilities
        if bad:
            problems.append(f"{where}.{_camel(spec.name)}: {value} is out of range")
            changes[spec.name] = getattr(default, spec.name)
    return replace(settings, **changes) if changes else settings


_SECTIONS: dict[str, type] = {
    "model": ModelSettings,
    "completion": CompletionSettings,
    "verify": VerifySettings,
    "index": IndexSettingsSchema,
}


def parse_settings(raw: object) -> tuple[ServerSettings, list[str]]:
    """Settings from client JSON, and one line per problem found (those fields defaulted)."""
    problems: list[str] = []
    if isinstance(raw, dict) and isinstance(raw.get("apprentice"), dict):
        raw = raw["apprentice"]
    if raw is None:
        return ServerSettings(), problems
    if not isinstance(raw, dict):
        return ServerSettings(), [f"settings: expected an object, got {type(raw).__name__}"]
    groups = {name: _section(cls, raw.get(name), name, problems) for name, cls in _SECTIONS.items()}
    languages = DEFAULT_LANGUAGES
    if "languages" in raw:
        value = raw["languages"]
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            languages = tuple(value)
        else:
            problems.append(f"languages: expected a list of language ids, got {value!r}")
    log_level = "info"
    if "logLevel" in raw:
        value = raw["logLevel"]
        if isinstance(value, str) and value.lower() in LOG_LEVELS:
            log_level = value.lower()
        else:
            problems.append(f"logLevel: expected one of {', '.join(LOG_LEVELS)}, got {value!r}")
    known = {*_SECTIONS, "languages", "logLevel"}
    problems.extend(f"{key}: unknown setting" for key in raw if key not in known)
    settings = ServerSettings(languages=languages, log_level=log_level, **groups)
    return settings, problems


def settings_as_json(settings: ServerSettings) -> dict[str, Any]:
    """The camelCase JSON form (the shape clients send), e.g. for ``apprentice.status``."""

    def convert(value: Any) -> Any:
        if is_dataclass(value) and not isinstance(value, type):
            return {_camel(f.name): convert(getattr(value, f.name)) for f in fields(value)}
        if isinstance(value, tuple):
            return list(value)
        return value

    result = convert(settings)
    assert isinstance(result, dict)
    return result
