"""The distilled dataset: examples as text (prefix, suffix, middle), split by file, and its card.

On disk a dataset is a directory: ``train.jsonl`` and ``heldout.jsonl`` (one example per
line) and ``card.json`` / ``CARD.md`` (sources and licences, counts, reject reasons, the
teacher). The examples are layout-neutral: each keeps its parts (``prefix``, ``suffix``,
``middle``), which ``apprentice train`` lays out in the FIM layout of whichever base it
trains, with that base's tokenizer. For other trainers each line also carries the example
rendered as plain ``prompt`` / ``completion`` strings in the apprentice student's layout
(``RENDERED_FAMILY``).

Format version 2 (``dataset_format``) says the parts are what counts; version 1 datasets
(whose card named ``apprentice-gemma3`` as if it bound the base) hold the same parts and
are read the same way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from model.checkpoints.atomic_io import write_text_atomic
from model.runtime.api import ModelError, render_prompt
from model.runtime.fim import STUDENT_FAMILY, TRAINED_TEMPLATES
from model.runtime.prompt import PromptInput, build_prompt

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
FORMAT_FAMILY = "text"  # prefix, suffix and middle as text; the layout is the trainer's choice
READABLE_VERSIONS = (1, 2)
RENDERED_FAMILY = STUDENT_FAMILY  # the layout of each line's prompt / completion strings
TRAIN_FILE = "train.jsonl"
HELDOUT_FILE = "heldout.jsonl"
CARD_JSON = "card.json"
CARD_MD = "CARD.md"
# The file text an example keeps around its hole; the trainer cuts further to its budget.
PREFIX_WINDOW_CHARS = 3000
SUFFIX_WINDOW_CHARS = 1000
_RENDER_BUDGET = 1024


class DatasetError(ModelError):
    """A dataset is missing, empty or in a format this trainer does not read."""


def dataset_format() -> dict[str, Any]:
    """The card's ``format`` entry for a dataset written now."""
    return {"family": FORMAT_FAMILY, "version": FORMAT_VERSION, "rendered": RENDERED_FAMILY}


@dataclass(frozen=True)
class Example:
    """One training example: the text around a hole, and one verified way to fill it."""

    id: str
    task: str
    repo: str
    path: str
    language: str
    kind: str
    source: str  # "truth" (the code that was there) or "teacher"
    prefix: str
    suffix: str
    middle: str

    def as_json(self) -> dict[str, Any]:
        """The JSONL object: the parts, plus the rendered prompt and completion."""
        data = asdict(self)
        prompt, completion = render_example(self)
        data["prompt"] = prompt
        data["completion"] = completion
        return data

    @staticmethod
    def from_json(data: dict[str, Any]) -> Example:
        """The example ``as_json`` wrote (extra keys ignored)."""
        fields = Example.__dataclass_fields__
        missing = [name for name in fields if name not in data]
        if missing:
            raise DatasetError(f"an example lacks {', '.join(missing)}")
        return Example(**{name: str(data[name]) for name in fields})


def prefix_window(prefix: str) -> str:
    """The end of ``prefix`` within the window, cut at a line start."""
    if len(prefix) <= PREFIX_WINDOW_CHARS:
        return prefix
    cut = prefix.find("\n", len(prefix) - PREFIX_WINDOW_CHARS)
    return prefix[cut + 1 :] if cut >= 0 else prefix[-PREFIX_WINDOW_CHARS:]


def suffix_window(suffix: str) -> str:
    """The start of ``suffix`` within the window, cut after a line end."""
    if len(suffix) <= SUFFIX_WINDOW_CHARS:
        return suffix
    cut = suffix.rfind("\n", 0, SUFFIX_WINDOW_CHARS)
    return suffix[: cut + 1] if cut >= 0 else suffix[:SUFFIX_WINDOW_CHARS]


def render_example(example: Example) -> tuple[str, str]:
    """The example as the server would prompt the shipped student (``RENDERED_FAMILY``), and
    what the student should answer: a convenience for trainers that take strings."""
    template = TRAINED_TEMPLATES[RENDERED_FAMILY]
    built = build_prompt(
        PromptInput(example.path, example.language, example.prefix, example.suffix),
        template,
        lambda text: len(text) // 3 + 1,
        _RENDER_BUDGET,
    )
    return render_prompt(built.prompt), example.middle + template.stop_tokens[0]


def dedupe_key(example: Example) -> str:
    """Examples with the same context and (whitespace-normalised) middle are one example."""
    middle = "\n".join(line.rstrip() for line in example.middle.strip("\n").split("\n"))
    key = "\0".join((example.repo, example.path, example.prefix, example.suffix, middle))
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def dedupe(examples: Iterable[Example]) -> tuple[list[Example], int]:
    """The examples without repeats (the first kept: ground truth comes first), and how many."""
    seen: set[str] = set()
    kept: list[Example] = []
    dropped = 0
    for example in examples:
        key = dedupe_key(example)
        if key in seen:
            dropped += 1
            continue
        seen.add(key)
        kept.append(example)
    return kept, dropped


def heldout_files(
    files: Sequence[tuple[str, str]], ratio: float, seed: int
) -> set[tuple[str, str]]:
    """The (repo, path) files whose examples are held out: a seeded share, never both splits.

    With two or more files and a ratio above zero, at least one file is held out and at
    least one is kept for training.
    """
    if ratio <= 0 or len(files) < 2:
        return set()

    def rank(file: tuple[str, str]) -> str:
        return hashlib.sha256(f"{seed}\0{file[0]}\0{file[1]}".encode()).hexdigest()

    ordered = sorted(set(files), key=rank)
    count = min(len(ordered) - 1, max(1, round(len(ordered) * ratio)))
    return set(ordered[:count])


def write_jsonl(path: Path, examples: Iterable[Example]) -> int:
    """Write the examples atomically; how many."""
    lines = [json.dumps(e.as_json(), ensure_ascii=False) for e in examples]
    write_text_atomic(path, "".join(line + "\n" for line in lines))
    return len(lines)


def read_jsonl(path: Path) -> list[Example]:
    """The examples of one split file; DatasetError for a missing or malformed file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"dataset file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read dataset file {path}: {error}") from None
    examples: list[Example] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            raise DatasetError(f"{path}:{number}: not a JSON line") from None
        if not isinstance(data, dict):
            raise DatasetError(f"{path}:{number}: not a JSON object")
        try:
            examples.append(Example.from_json(data))
        except DatasetError as error:
            raise DatasetError(f"{path}:{number}: {error}") from None
    return examples


def read_card(directory: Path) -> Any:
    """A dataset's ``card.json`` as parsed JSON; DatasetError when missing or unreadable."""
    card_path = Path(directory) / CARD_JSON
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(
            f"{directory} has no {CARD_JSON}: not a finished `apprentice distill` dataset"
        ) from None
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot read {card_path}: {error}") from None
    return card


def heldout_paths(directory: Path) -> set[str]:
    """The repository-relative paths of the files a dataset held out (its card lists them
    as ``REPO/PATH``): where a student's repository tasks are measured on unseen code."""
    card = read_card(directory)
    listed = card.get("heldout_files") if isinstance(card, dict) else None
    if not isinstance(listed, list) or not listed:
        raise DatasetError(
            f"{Path(directory) / CARD_JSON} lists no held-out files (was it made with --heldout 0?)"
        )
    return {str(name).split("/", 1)[1] for name in listed if "/" in str(name)}


def load_dataset(directory: Path) -> tuple[dict[str, Any], list[Example], list[Example]]:
    """A dataset directory's card, training and held-out examples; checked for use."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(f"dataset not found: {directory} (make one with `apprentice distill`)")
    card = read_card(directory)
    fmt = card.get("format", {}) if isinstance(card, dict) else {}
    if not isinstance(fmt, dict) or fmt.get("version") not in READABLE_VERSIONS:
        version = fmt.get("version") if isinstance(fmt, dict) else None
        raise DatasetError(
            f"{directory} is in dataset format v{version}; this trainer reads "
            f"v{' and v'.join(str(v) for v in READABLE_VERSIONS)} (`apprentice distill` writes "
            f"v{FORMAT_VERSION})"
        )
    train = read_jsonl(directory / TRAIN_FILE)
    heldout = read_jsonl(directory / HELDOUT_FILE)
    if not train:
        raise DatasetError(f"{directory / TRAIN_FILE} has no examples: nothing to train on")
    return card, train, heldout


_LICENCES = (
    ("PSF-2.0", re.compile(r"PYTHON SOFTWARE FOUNDATION LICENSE", re.I)),
    ("Apache-2.0", re.compile(r"Apache License,?\s+Version 2\.0", re.I)),
    ("MIT", re.compile(r"\bMIT License\b|Permission is hereby granted, free of charge", re.I)),
    ("BSD-3-Clause", re.compile(r"Neither the name of .{0,200} nor the names", re.I | re.S)),
    ("BSD-2-Clause", re.compile(r"Redistributions in binary form must reproduce", re.I)),
    ("MPL-2.0", re.compile(r"Mozilla Public License,?\s+(?:v\.|version) ?2\.0", re.I)),
    ("LGPL", re.compile(r"GNU LESSER GENERAL PUBLIC LICENSE", re.I)),
    ("GPL", re.compile(r"GNU GENERAL PUBLIC LICENSE", re.I)),
)


def detect_licence(root: Path) -> str:
    """The licence of the repository at ``root`` from its licence file ("unknown" without one)."""
    for pattern in ("LICENSE*", "LICENCE*", "COPYING*", "LICENSE.txt"):
        for path in sorted(root.glob(pattern)):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")[:200_000]
            except OSError:
                continue
            for name, regex in _LICENCES:
                if regex.search(text):
                    return name
            return f"see {path.name}"
    return "unknown"


def card_markdown(card: dict[str, Any]) -> str:
    """The human-readable card."""
    counts = card["counts"]
    teacher = card["teacher"]
    rendered = card["format"].get("rendered", RENDERED_FAMILY)
    lines = [
        "# Dataset card",
        "",
        f"Format: v{card['format']['version']}: each example is text (prefix, suffix, "
        "middle), laid out by `apprentice train` in the FIM layout of the base it trains; "
        f"`prompt` and `completion` render it in `{rendered}`.",
        "",
        "## Sources",
        "",
        "| repository | licence | files | tasks |",
        "|---|---|---|---|",
    ]
    for source in card["sources"]:
        lines.append(
            f"| {source['name']} | {source['licence']} | {source['files']} | {source['tasks']} |"
        )
    lines += [
        "",
        "## Counts",
        "",
        f"- tasks: {counts['tasks']} ({_pairs(counts['tasks_by_kind'])})",
        f"- teacher samples: {counts['teacher_samples']}, kept {counts['teacher_kept']}",
        f"- duplicates dropped: {counts['duplicates']}",
        f"- train: {counts['train_examples']} examples from {counts['train_files']} files",
        f"- held out: {counts['heldout_examples']} examples from {counts['heldout_files']} files",
        "",
        "## Rejected teacher samples",
        "",
        _pairs(card["reject_reasons"]) or "none",
        "",
        "## Teacher",
        "",
        f"{teacher['name']} (model {teacher.get('model') or '-'}), k={teacher['k']}, "
        f"temperature {teacher['temperature']}; {teacher['requests']} requests, "
        f"{teacher['retried']} retried.",
        "",
    ]
    return "\n".join(lines)


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
