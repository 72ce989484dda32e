"""Builds the token-budgeted completion prompt: stable repository context first, then the file."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from model.runtime.api import Prompt, PromptPart, SpecialToken
from model.runtime.fim import SP_SPACE, FimTemplate

logger = logging.getLogger(__name__)

# Share of the budget (after markers and headers) the suffix may take; llama.cpp's /infill
# keeps prefix:suffix at 3:1, Continue gives the suffix up to 20%.
SUFFIX_RATIO = 0.2
# Share the prefix may take while snippets compete for the rest (they get at least 25%).
PREFIX_RATIO = 0.55
# The prefix is cut only at every PREFIX_CUT_STEP-th line of the file, so typing on the cursor
# line keeps the same first line, and with it llama.cpp's cached prompt prefix, for many
# keystrokes instead of shifting it on nearly every one.
PREFIX_CUT_STEP = 8
# A prefix that fits is charged in granules when leftover budget goes to snippets, so the set
# of snippets (which sit before the prefix in the cache) changes rarely while typing.
CLAIM_GRANULE = 32
# A snippet cut to fit must keep at least this many tokens (a signature, not a fragment).
MIN_SNIPPET_HEAD = 24
# No tokenizer packs more characters than this into one token on real code; text beyond
# budget * this many characters cannot fit and is dropped before anything is counted.
MAX_CHARS_PER_TOKEN = 12

_LINE_COMMENT: dict[str, str] = {
    **dict.fromkeys(
        (
            "python",
            "shell",
            "shellscript",
            "bash",
            "sh",
            "zsh",
            "fish",
            "ruby",
            "yaml",
            "toml",
            "perl",
            "r",
            "make",
            "makefile",
            "cmake",
            "dockerfile",
            "elixir",
            "julia",
            "nim",
            "powershell",
            "coffeescript",
            "text",
            "plaintext",
        ),
        "#",
    ),
    **dict.fromkeys(
        (
            "c",
            "cpp",
            "objective-c",
            "objective-cpp",
            "csharp",
            "java",
            "javascript",
            "javascriptreact",
            "typescript",
            "typescriptreact",
            "tsx",
            "jsx",
            "go",
            "rust",
            "kotlin",
            "swift",
            "scala",
            "dart",
            "php",
            "zig",
            "groovy",
            "json",
            "jsonc",
            "scss",
            "less",
            "proto",
            "solidity",
        ),
        "//",
    ),
    **dict.fromkeys(("lua", "sql", "haskell", "elm", "ada", "purescript"), "--"),
    **dict.fromkeys(("clojure", "lisp", "scheme", "racket", "commonlisp"), ";"),
    **dict.fromkeys(("erlang", "latex", "tex", "matlab", "prolog"), "%"),
    "vim": '"',
}
_BLOCK_COMMENT: dict[str, tuple[str, str]] = {
    **dict.fromkeys(("html", "xml", "markdown", "vue", "svelte"), ("<!--", "-->")),
    "css": ("/*", "*/"),
    "ocaml": ("(*", "*)"),
}


def comment_syntax(language: str) -> tuple[str, str]:
    """How ``language`` writes a comment: (opener, closer), closer empty for line comments."""
    lang = language.lower()
    if lang in _BLOCK_COMMENT:
        return _BLOCK_COMMENT[lang]
    return _LINE_COMMENT.get(lang, "#"), ""


@dataclass(frozen=True)
class Snippet:
    """A piece of repository context: text from ``path`` (starting at ``start_line``)."""

    path: str
    text: str
    start_line: int = 0
    reason: str = ""


@dataclass(frozen=True)
class PromptInput:
    """What a prompt is built from; ``snippets`` come in the caller's stable priority order."""

    path: str  # repo-relative path of the current file
    language: str
    prefix: str
    suffix: str
    snippets: Sequence[Snippet] = ()
    repo_name: str = ""


@dataclass(frozen=True)
class BuiltPrompt:
    """A prompt ready for a backend, and what went into it (for logs and the stop condition)."""

    prompt: Prompt
    mode: Literal["fim", "prefix"]
    stop_tokens: tuple[SpecialToken, ...]
    snippets_used: tuple[str, ...]  # paths, logged per prompt
    token_estimate: int
    prefix_chars: int
    suffix_chars: int


@dataclass(frozen=True)
class _Fit:
    text: str
    tokens: int
    cut: bool


def build_prompt(
    inp: PromptInput,
    template: FimTemplate | None,
    count_tokens: Callable[[str], int],
    budget: int,
    *,
    prefix_ratio: float = PREFIX_RATIO,
    suffix_ratio: float = SUFFIX_RATIO,
    snippet_heads: bool = True,
) -> BuiltPrompt:
    """Lay out snippets, prefix and suffix for ``template`` within ``budget`` tokens.

    ``template`` None builds a prefix-only prompt. ``count_tokens`` is called once per piece
    plus O(log n) times per cut, never per line. With ``snippet_heads``, a snippet too long
    for what is left still gives its first lines (a definition's signature and docstring)
    instead of nothing.
    """
    repo_layout = template is not None and template.file_sep is not None
    comment = comment_syntax(inp.language)
    comment_open, comment_close = comment

    head: tuple[PromptPart, ...] = ()
    head_tokens = 0
    if template is not None and template.repo_name and repo_layout and inp.repo_name:
        repo_text = inp.repo_name + ("\n" if template.repo_layout == "qwen" else "")
        head = (SpecialToken(template.repo_name), repo_text)
        head_tokens = count_tokens(repo_text)

    if not inp.path:
        header = ""
    elif repo_layout:
        header = f"{inp.path}\n"
    else:
        header = f"{comment_open} Path: {inp.path}{' ' + comment_close if comment_close else ''}\n"
    header_tokens = count_tokens(header) if header else 0

    # Whole snippets only, deduplicated, each rendered and counted once.
    pieces: list[tuple[Snippet, tuple[PromptPart, ...], int]] = []
    seen: set[tuple[str, str]] = set()
    for snippet in inp.snippets:
        key = (snippet.path, snippet.text)
        if not snippet.text.strip() or key in seen:
            continue
        seen.add(key)
        parts, cost = _render_snippet(snippet.path, snippet.text, template, count_tokens, comment)
        pieces.append((snippet, parts, cost))
    snippet_total = sum(cost for _, _, cost in pieces)

    # Markers of the frame around the snippets (each snippet's own marker is in its cost).
    skeleton = _assemble(template, head, ("x",) if pieces else (), header, "", "")
    markers = sum(1 for part in skeleton if isinstance(part, SpecialToken))
    spacing = 3 if template is not None and template.spaced else 0
    fixed = head_tokens + header_tokens + markers + spacing
    avail = max(0, budget - fixed)

    suffix = _Fit("", 0, False)
    if template is not None:
        suffix = _fit_head(inp.suffix, int(avail * suffix_ratio), count_tokens)
    room = avail - suffix.tokens
    prefix_cap = max(int(avail * prefix_ratio), room - snippet_total) if pieces else room
    prefix_cap = max(0, min(prefix_cap, room))
    prefix = _fit_tail(inp.prefix, prefix_cap, count_tokens)

    # Leftover budget goes to snippets, in the caller's order, skipping those that do not fit.
    claim = prefix_cap if prefix.cut else min(prefix_cap, _round_up(prefix.tokens, CLAIM_GRANULE))
    left = room - claim
    chosen: list[PromptPart] = []
    used: list[str] = []
    snippet_tokens = 0
    for snippet, parts, cost in pieces:
        if cost > left and snippet_heads and left >= MIN_SNIPPET_HEAD:
            parts, cost = _snippet_head(snippet, template, left, count_tokens, comment)
        if cost <= left:
            chosen.extend(parts)
            used.append(snippet.path)
            left -= cost
            snippet_tokens += cost
        else:
            logger.debug("snippet %s skipped: %d tokens, %d left", snippet.path, cost, left)

    prompt = _assemble(template, head, tuple(chosen), header, prefix.text, suffix.text)
    estimate = fixed + snippet_tokens + prefix.tokens + suffix.tokens
    stops = tuple(SpecialToken(t) for t in template.stop_tokens) if template else ()
    return BuiltPrompt(
        prompt=prompt,
        mode="fim" if template is not None else "prefix",
        stop_tokens=stops,
        snippets_used=tuple(used),
        token_estimate=estimate,
        prefix_chars=len(prefix.text),
        suffix_chars=len(suffix.text),
    )


def _render_snippet(
    path: str,
    text: str,
    template: FimTemplate | None,
    count_tokens: Callable[[str], int],
    comment: tuple[str, str],
) -> tuple[tuple[PromptPart, ...], int]:
    """A snippet's prompt parts (a file separator, or a comment block) and their tokens."""
    body = text.rstrip("\n") + "\n"
    if template is not None and template.file_sep is not None:
        rendered = f"{path}\n{body}"
        return (SpecialToken(template.file_sep), rendered), 1 + count_tokens(rendered)
    rendered = _comment_block(path, body, *comment)
    return (rendered,), count_tokens(rendered)


def _snippet_head(
    snippet: Snippet,
    template: FimTemplate | None,
    left: int,
    count_tokens: Callable[[str], int],
    comment: tuple[str, str],
) -> tuple[tuple[PromptPart, ...], int]:
    """The longest run of the snippet's first lines that fits ``left`` tokens, rendered."""
    lines = snippet.text.rstrip("\n").split("\n")
    lo, hi = 0, len(lines) - 1  # whole lines kept; the full snippet did not fit
    best: tuple[tuple[PromptPart, ...], int] = ((), left + 1)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        parts, cost = _render_snippet(
            snippet.path, "\n".join(lines[:mid]), template, count_tokens, comment
        )
        if cost <= left:
            best, lo = (parts, cost), mid
        else:
            hi = mid - 1
    return best


def _assemble(
    template: FimTemplate | None,
    head: tuple[PromptPart, ...],
    snippets: tuple[PromptPart, ...],
    header: str,
    prefix: str,
    suffix: str,
) -> Prompt:
    """Order the parts: what stays the same across keystrokes first, the cursor region last."""
    if template is None:
        return _nonempty((*snippets, header, prefix))
    pre, suf = SpecialToken(template.prefix), SpecialToken(template.suffix)
    mid: tuple[PromptPart, ...] = (SpecialToken(template.middle),) if template.middle else ()
    if template.spaced:
        # "<PRE> {prefix} <SUF>{suffix} <MID>"; a "▁<SUF>" token already carries its space.
        prefix = " " + prefix + ("" if template.suffix.startswith(SP_SPACE) else " ")
        if template.middle and not template.middle.startswith(SP_SPACE):
            suffix += " "
    if template.file_sep is not None:
        sep = SpecialToken(template.file_sep)
        opens_file = bool(header or head or snippets)
        opening: tuple[PromptPart, ...] = (sep,) if opens_file else ()
        if template.repo_layout == "starcoder2":
            # StarCoder2 was trained with the FIM file's path right after <fim_prefix>.
            current: tuple[PromptPart, ...] = (*opening, pre, header, prefix, suf, suffix)
        elif template.order == "spm":
            current = (*opening, header, suf, suffix, pre, prefix)
        else:
            current = (*opening, header, pre, prefix, suf, suffix)
        return _nonempty((*head, *snippets, *current, *mid))
    if template.order == "spm":
        # Codestral is trained on [SUFFIX]…[PREFIX]…; context goes with the prefix, as Continue
        # does. The suffix does not change while typing, so the cached prefix still holds.
        return _nonempty((suf, suffix, pre, *snippets, header, prefix, *mid))
    return _nonempty((*snippets, header, pre, prefix, suf, suffix, *mid))


def _nonempty(parts: tuple[PromptPart, ...]) -> Prompt:
    return tuple(p for p in parts if isinstance(p, SpecialToken) or p)


def _comment_block(path: str, body: str, opener: str, closer: str) -> str:
    """A snippet as a comment, so the model reads it as context and not as this file's code."""
    if closer:
        safe = body.replace(closer, closer[0] + " " + closer[1:])
        return f"{opener} Path: {path}\n{safe}{closer}\n"
    lines = [f"{opener} Path: {path}"]
    lines += [f"{opener} {line}".rstrip() for line in body.rstrip("\n").split("\n")]
    return "\n".join(lines) + "\n"


def _round_up(value: int, granule: int) -> int:
    return -(-value // granule) * granule


def _fit_tail(text: str, cap: int, count: Callable[[str], int]) -> _Fit:
    """The end of ``text`` that fits ``cap`` tokens, cut at a line start (the cursor side kept)."""
    if not text:
        return _Fit("", 0, False)
    if cap <= 0:
        return _Fit("", 0, True)
    limit = cap * MAX_CHARS_PER_TOKEN
    if len(text) <= limit:
        tokens = count(text)
        if tokens <= cap:
            return _Fit(text, tokens, False)
        window = 0
    else:
        # Only lines within ``limit`` characters of the cursor can fit; index just those.
        floor = len(text) - limit
        window = floor if text[floor - 1] == "\n" else text.find("\n", floor) + 1
        if window == 0:
            return _char_tail(text, floor, cap, count)
    first_line = text.count("\n", 0, window)
    starts = [window, *(window + m.end() for m in re.finditer("\n", text[window:]))]
    # Prefer cut points on every PREFIX_CUT_STEP-th line of the file (stable while typing),
    # then any line start after the last of them, then a cut inside the cursor line.
    anchors = [j for j in range(len(starts)) if (first_line + j) % PREFIX_CUT_STEP == 0]
    found = _first_fitting(text, [starts[j] for j in anchors], cap, count)
    if found is None:
        found = _first_fitting(text, starts[anchors[-1] + 1 if anchors else 0 :], cap, count)
    if found is None:
        return _char_tail(text, starts[-1], cap, count)
    start, tokens = found
    return _Fit(text[start:], tokens, True)


def _first_fitting(
    text: str, starts: Sequence[int], cap: int, count: Callable[[str], int]
) -> tuple[int, int] | None:
    """The earliest start whose tail fits, by binary search (tails shrink as starts grow)."""
    lo, hi = 0, len(starts)
    best: tuple[int, int] | None = None
    while lo < hi:
        mid = (lo + hi) // 2
        tokens = count(text[starts[mid] :])
        if tokens <= cap:
            best = (starts[mid], tokens)
            hi = mid
        else:
            lo = mid + 1
    return best


def _char_tail(text: str, floor: int, cap: int, count: Callable[[str], int]) -> _Fit:
    """A tail cut inside one very long line, sized by the measured characters per token."""
    start = max(floor, len(text) - cap * MAX_CHARS_PER_TOKEN)
    for _ in range(4):
        piece = text[start:]
        tokens = count(piece) if piece else 0
        if tokens <= cap:
            return _Fit(piece, tokens, True)
        start = len(text) - int(len(piece) * cap / tokens * 0.9)
    return _Fit("", 0, True)


def _fit_head(text: str, cap: int, count: Callable[[str], int]) -> _Fit:
    """The start of ``text`` that fits ``cap`` tokens, cut at a line end (the cursor side kept)."""
    if not text:
        return _Fit("", 0, False)
    if cap <= 0:
        return _Fit("", 0, True)
    limit = cap * MAX_CHARS_PER_TOKEN
    if len(text) <= limit:
        tokens = count(text)
        if tokens <= cap:
            return _Fit(text, tokens, False)
    # Only lines within ``limit`` characters of the cursor can fit; index just those.
    ends = [m.end() for m in re.finditer("\n", text[:limit])]
    if len(text) <= limit and (not ends or ends[-1] != len(text)):
        ends.append(len(text))
    candidates = ends
    # Tokens grow with the end position: find the last end that still fits.
    lo, hi = 0, len(candidates)
    best: tuple[int, int] | None = None
    while lo < hi:
        mid = (lo + hi) // 2
        tokens = count(text[: candidates[mid]])
        if tokens <= cap:
            best = (candidates[mid], tokens)
            lo = mid + 1
        else:
            hi = mid
    if best is not None:
        return _Fit(text[: best[0]], best[1], True)
    line_end = text.find("\n")
    end = min(limit, len(text) if line_end < 0 else line_end + 1)
    for _ in range(4):
        piece = text[:end]
        tokens = count(piece) if piece else 0
        if tokens <= cap:
            return _Fit(piece, tokens, True)
        end = int(len(piece) * cap / tokens * 0.9)
    return _Fit("", 0, True)
