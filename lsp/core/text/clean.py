"""Deciding how much a suggestion may span, and cleaning what the model wrote to fit the buffer."""

from __future__ import annotations

import functools
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, replace

from model.runtime.fim import all_markers
from model.runtime.prompt import comment_syntax

logger = logging.getLogger(__name__)

_OPENERS = "([{"
_CLOSERS = ")]}"
_MATCH = {")": "(", "]": "[", "}": "{"}
# Languages whose blocks open with a trailing colon.
_COLON_BLOCKS = frozenset({"python", "yaml"})
# Lines that can only start a new top-level Python statement: a block body never reaches them.
_PY_TOP_LEVEL = ("\ndef ", "\nclass ", "\nif __name__", "\n@")
_PY_TOP_LEVEL_START = re.compile(r"(?:async\s+def|def|class)\s|if __name__|@")
# Languages whose formatter indents with tabs when the buffer gives no evidence.
_TAB_LANGUAGES = frozenset({"go", "make", "makefile"})
_TRAILING_CLOSERS = re.compile(r"([)\]}]+)([;,]?)\s*$")
# How many lines around the cursor the bracket and indentation scans look at.
_SCAN_LINES = 200
DEFAULT_MAX_LINES = 12


@dataclass(frozen=True)
class CompletionPlan:
    """How far a suggestion may reach, decided from the cursor before generating.

    ``indent`` is the cursor line's indentation; ``block_indent`` the indentation of the line
    that opens the block being written (None outside one); ``line_suffix`` the text after the
    cursor on its line. ``stop`` goes to the backend as stop strings; ``language`` is the
    buffer's language id, which cleaning needs for comments and block syntax.
    """

    multiline: bool
    stop: tuple[str, ...]
    indent: str
    block_indent: str | None
    line_suffix: str
    max_lines: int
    language: str = ""


def plan_completion(
    prefix: str, suffix: str, language: str, *, max_lines: int = DEFAULT_MAX_LINES
) -> CompletionPlan:
    """Single line mid-line, a block after a block opener, otherwise the current statement."""
    lang = language.lower()
    line_prefix = prefix.rsplit("\n", 1)[-1]
    line_suffix = suffix.split("\n", 1)[0]
    indent = _leading(line_prefix)
    if line_suffix.strip():
        return CompletionPlan(False, ("\n",), indent, None, line_suffix, 1, lang)
    opener: str | None = None
    if line_prefix.strip():
        if opens_block(line_prefix, lang):
            opener = line_prefix
    else:
        # A fresh (possibly indented) line right below a block opener: write the block's body.
        for line in reversed(prefix.rsplit("\n", 8)[:-1]):
            if line.strip():
                opener = line if opens_block(line, lang) else None
                break
    python_stops = _PY_TOP_LEVEL if lang == "python" else ()
    if opener is not None:
        stop = ("\n\n\n", *python_stops)
        return CompletionPlan(True, stop, indent, _leading(opener), line_suffix, max_lines, lang)
    stop = ("\n\n\n", *(python_stops if indent else ()))
    return CompletionPlan(False, stop, indent, None, line_suffix, max_lines, lang)


def single_line(plan: CompletionPlan) -> CompletionPlan:
    """The same plan limited to the rest of the cursor line."""
    if plan.max_lines == 1 and not plan.multiline:
        return plan
    return replace(plan, multiline=False, stop=("\n",), block_indent=None, max_lines=1)


def clean_completion(text: str, prefix: str, suffix: str, plan: CompletionPlan) -> str | None:
    """The part of ``text`` worth showing at the cursor, or None when nothing useful is left."""
    text = _cut_at_markers(text.replace("\r\n", "\n"))
    text = _cut_at_stops(text, plan.stop)
    ctx = _Context.build(prefix, suffix, plan)
    if not plan.multiline and plan.line_suffix.strip():
        return _clean_inline(text, ctx)
    return _clean_lines(text, ctx, plan)


# --- context -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    """What cleaning needs to know about the buffer around the cursor."""

    language: str
    comment: str
    line_prefix: str
    line_suffix: str
    lines_above: tuple[str, ...]  # complete lines above the cursor line, nearest last
    next_line: str | None  # first non-blank line below the cursor line
    use_tabs: bool
    unit: int  # columns per indentation level
    missing_closers: int  # brackets open before the cursor that nothing after it closes

    @staticmethod
    def build(prefix: str, suffix: str, plan: CompletionPlan) -> _Context:
        language = plan.language.lower()
        comment = comment_syntax(language)[0]
        # Equal windows on both sides, so brackets opened and closed far away cancel out.
        above = prefix.rsplit("\n", _SCAN_LINES)[-_SCAN_LINES:]
        below = suffix.split("\n", _SCAN_LINES)[:_SCAN_LINES]
        use_tabs, unit = _indent_style([*above, *below], language)
        next_line = next((line for line in below[1:] if line.strip()), None)
        unclosed, _ = _brackets("\n".join(above), comment)
        _, unmatched = _brackets("\n".join(below), comment)
        return _Context(
            language=language,
            comment=comment,
            line_prefix=above[-1],
            line_suffix=plan.line_suffix,
            lines_above=tuple(above[:-1]),
            next_line=None if next_line is None else _normalize(next_line, use_tabs, unit),
            use_tabs=use_tabs,
            unit=unit,
            missing_closers=max(0, len(unclosed) - len(unmatched)),
        )

    def width(self, ws: str) -> int:
        return sum(self.unit if c == "\t" else 1 for c in ws)

    def make_indent(self, width: int) -> str:
        if self.use_tabs:
            return "\t" * (width // self.unit) + " " * (width % self.unit)
        return " " * width


def _indent_style(lines: list[str], language: str) -> tuple[bool, int]:
    """Whether the buffer indents with tabs, and its indentation unit in columns."""
    tabs = sum(1 for line in lines if line.startswith("\t"))
    spaces = sum(1 for line in lines if line.startswith(" ") and line.strip())
    if tabs > spaces or (tabs == spaces == 0 and language in _TAB_LANGUAGES):
        return True, 4
    steps: Counter[int] = Counter()
    previous = 0
    for line in lines:
        if not line.strip() or line.startswith("\t"):
            continue
        width = len(line) - len(line.lstrip(" "))
        if width > previous:
            steps[width - previous] += 1
        previous = width
    unit = steps.most_common(1)[0][0] if steps else 4
    return False, unit if 2 <= unit <= 8 else 4


# --- scanning helpers ----------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _scanner(comment: str) -> re.Pattern[str]:
    strings = r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|`(?:\\.|[^`\\\n])*`'
    return re.compile(f"{re.escape(comment)}[^\\n]*|{strings}|[()\\[\\]{{}}]")


def _brackets(text: str, comment: str) -> tuple[list[str], list[str]]:
    """Brackets left open in ``text`` (innermost last) and closers it has without an opener."""
    stack: list[str] = []
    unmatched: list[str] = []
    for match in _scanner(comment).finditer(text):
        token = match.group()
        if token in _OPENERS:
            stack.append(token)
        elif token in _CLOSERS:
            if stack and stack[-1] == _MATCH[token]:
                stack.pop()
            else:
                unmatched.append(token)
    return stack, unmatched


def _code_part(line: str, comment: str) -> str:
    """``line`` without a trailing comment (comment markers inside strings do not count)."""
    for match in _scanner(comment).finditer(line):
        if match.group().startswith(comment):
            return line[: match.start()]
    return line


def opens_block(line: str, language: str) -> bool:
    """Whether ``line`` opens a block (a trailing bracket, or a colon in Python and YAML)."""
    code = _code_part(line, comment_syntax(language)[0]).rstrip()
    if not code:
        return False
    return code[-1] in _OPENERS or (language in _COLON_BLOCKS and code.endswith(":"))


def _quotes_balanced(text: str) -> bool:
    stripped = re.sub(r"\\.", "", text)
    return all(stripped.count(q) % 2 == 0 for q in "\"'`")


def _leading(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def _normalize(line: str, use_tabs: bool, unit: int, source_unit: int = 4) -> str:
    """``line`` with its indentation in the buffer's style (tabs or ``unit``-wide spaces)."""
    lead = _leading(line)
    body = line[len(lead) :]
    if use_tabs and " " in lead:
        width = sum(source_unit if c == "\t" else 1 for c in lead)
        return "\t" * (width // source_unit) + " " * (width % source_unit) + body
    if not use_tabs and "\t" in lead:
        return lead.replace("\t", " " * unit) + body
    return line


def _cut_at_markers(text: str) -> str:
    """Drop everything from a control-token text the model spelled out (remote servers do)."""
    cut = min((i for m in _distinctive_markers() if (i := text.find(m)) >= 0), default=-1)
    return text if cut < 0 else text[:cut]


@functools.lru_cache(maxsize=1)
def _distinctive_markers() -> tuple[str, ...]:
    # Markers such as "</s>" or "[PREFIX]" can be real code; only unmistakable ones cut.
    distinctive = re.compile(r"[|｜▁]|fim|file_sep|repo_name|end_of_turn|file_separator")
    return tuple(m for m in all_markers() if distinctive.search(m))


def _cut_at_stops(text: str, stops: tuple[str, ...]) -> str:
    cut = min((i for s in stops if s and (i := text.find(s)) >= 0), default=-1)
    return text if cut < 0 else text[:cut]


# --- mid-line ------------------------------------------------------------------------------


def _clean_inline(text: str, ctx: _Context) -> str | None:
    """One line that joins the text after the cursor without repeating it."""
    line_suffix = ctx.line_suffix.rstrip()
    suggestion = text.split("\n", 1)[0]
    if not suggestion.strip() or suggestion.strip() == line_suffix.strip():
        return None
    suggestion = _cut_at_line_suffix(suggestion, line_suffix, ctx)
    suggestion = _strip_overlap(suggestion, line_suffix, ctx)
    suggestion = _strip_extra_closers(suggestion, ctx)
    if line_suffix[:1].isspace() or not suggestion.strip():
        suggestion = suggestion.rstrip()
    return suggestion or None


def _cut_at_line_suffix(suggestion: str, line_suffix: str, ctx: _Context) -> str:
    """Stop where the model starts writing the existing rest of the line (outside brackets)."""
    for pattern in dict.fromkeys((line_suffix, line_suffix.strip())):
        if not pattern:
            continue
        start = suggestion.find(pattern)
        while start >= 0:
            before = suggestion[:start]
            if not _brackets(before, ctx.comment)[0] and _quotes_balanced(ctx.line_prefix + before):
                return before if pattern == line_suffix else before.rstrip()
            start = suggestion.find(pattern, start + 1)
    return suggestion


def _strip_overlap(suggestion: str, line_suffix: str, ctx: _Context) -> str:
    """Remove an ending that the line suffix already has (``"hi")`` before ``")``)."""
    for pattern in dict.fromkeys((line_suffix, line_suffix.lstrip())):
        for k in range(len(pattern), 0, -1):
            removed = pattern[:k]
            if not removed.strip() or not suggestion.endswith(removed):
                continue
            kept = suggestion[: len(suggestion) - k]
            # Keep closers that close what the suggestion itself opened.
            if _brackets(kept, ctx.comment)[0] and any(c in _CLOSERS for c in removed):
                continue
            if not _quotes_balanced(kept) and any(c in "\"'`" for c in removed):
                continue
            return kept
    return suggestion


def _strip_extra_closers(text: str, ctx: _Context) -> str:
    """Drop trailing closers (and a ``;``/``,`` after them) that the buffer already has."""
    _, unmatched = _brackets(text, ctx.comment)
    extra = len(unmatched) - ctx.missing_closers
    tail = _TRAILING_CLOSERS.search(text)
    if extra <= 0 or tail is None:
        return text
    closers = tail.group(1)
    keep = closers[: max(0, len(closers) - extra)]
    # "b);" before a buffer that already has ");": the punctuation goes with the closer.
    return text[: tail.start()] + keep + (tail.group(2) if keep else "")


# --- line-based ----------------------------------------------------------------------------


def _clean_lines(text: str, ctx: _Context, plan: CompletionPlan) -> str | None:
    """A statement or block starting at the cursor, cut where the buffer's code resumes."""
    source_unit = _source_unit(text)
    lines = [_normalize(line, ctx.use_tabs, ctx.unit, source_unit) for line in text.split("\n")]
    blank_cursor = not ctx.line_prefix.strip()
    if blank_cursor and len(lines) > 1 and not lines[0].strip():
        # The cursor already sits on a fresh line: drop the model's extra line breaks and the
        # indentation the cursor line already has.
        while len(lines) > 1 and not lines[0].strip():
            lines.pop(0)
        lead = _leading(lines[0])
        if lead.startswith(ctx.line_prefix):
            lines[0] = lines[0][len(ctx.line_prefix) :]
        elif ctx.width(lead) <= ctx.width(ctx.line_prefix):
            lines[0] = lines[0].lstrip(" \t")
    lines = lines[: plan.max_lines * 4]
    lines = _cut_at_next_line(lines, ctx, blank_cursor)
    if not lines:
        return None  # the model's first line is the code that already follows
    limited: list[str] | None
    if plan.multiline and plan.block_indent is not None:
        limited = _limit_block(lines, ctx, ctx.width(plan.block_indent), blank_cursor, plan)
    else:
        limited = _limit_statement(lines, ctx, blank_cursor, plan)
    if limited is None:
        return None
    lines = [line.rstrip() for line in _drop_repeats(limited)]
    while lines and not lines[-1].strip():
        lines.pop()
    lines = lines[: plan.max_lines]
    result = _strip_extra_closers("\n".join(lines), ctx).rstrip()
    if not result.strip() or _repeats_above(result, ctx, blank_cursor):
        return None
    return result


def _source_unit(text: str) -> int:
    """The model's own spaces-per-level, to translate its indentation into tabs."""
    widths = [len(m.group(1)) for m in re.finditer(r"^( +)\S", text, re.MULTILINE)]
    unit = functools.reduce(math.gcd, widths, 0)
    # One line at 8 or 12 columns says "nested", not "8 columns per level".
    return 4 if unit % 4 == 0 or not 2 <= unit <= 8 else unit


def _eff_width(lines: list[str], i: int, ctx: _Context, blank_cursor: bool) -> int:
    """Indentation of generated line ``i`` in the buffer (line 0 sits on the cursor line)."""
    if i > 0:
        return ctx.width(_leading(lines[i]))
    if blank_cursor:
        return ctx.width(ctx.line_prefix) + ctx.width(_leading(lines[0]))
    return ctx.width(_leading(ctx.line_prefix))


def _cut_at_next_line(lines: list[str], ctx: _Context, blank_cursor: bool) -> list[str]:
    """Stop before a generated line that repeats the next non-blank line below the cursor."""
    if ctx.next_line is None:
        return lines
    target = ctx.next_line.rstrip()
    for i, line in enumerate(lines):
        if i == 0 and not blank_cursor:
            continue  # the rest of the cursor line, not a line of its own
        full = ctx.line_prefix + line if i == 0 else line
        if full.strip() and full.rstrip() == target:
            return lines[:i]
    return lines


def _first_code_line(lines: list[str], start: int) -> int | None:
    return next((i for i in range(start, len(lines)) if lines[i].strip()), None)


def _limit_block(
    lines: list[str], ctx: _Context, block_width: int, blank_cursor: bool, plan: CompletionPlan
) -> list[str] | None:
    """The body of the block opened above the cursor, ended by indentation."""
    first = _first_code_line(lines, 0 if blank_cursor else 1)
    if first is None:
        return lines[:1]
    first_width = _eff_width(lines, first, ctx, blank_cursor)
    if first_width <= block_width:
        return _reindent_body(lines, first, first_width, block_width, ctx, blank_cursor, plan)
    return lines[:first] + _take_body(lines[first:], ctx, block_width, ctx.missing_closers > 0)


def _take_body(lines: list[str], ctx: _Context, block_width: int, need_closer: bool) -> list[str]:
    """Lines up to the first non-blank one that dedents to the opener (a needed closer kept)."""
    for i in range(1, len(lines)):
        line = lines[i]
        if not line.strip():
            continue
        width = ctx.width(_leading(line))
        if width > block_width:
            continue
        closes = line.lstrip()[0] in _CLOSERS
        if closes and width == block_width and need_closer:
            return lines[: i + 1]
        return lines[:i]
    return lines


def _reindent_body(
    lines: list[str],
    first: int,
    first_width: int,
    block_width: int,
    ctx: _Context,
    blank_cursor: bool,
    plan: CompletionPlan,
) -> list[str] | None:
    """A body the model failed to indent: keep its first statement, shifted one level in."""
    head = lines[first].lstrip()
    if head[0] in _CLOSERS or (ctx.language == "python" and _PY_TOP_LEVEL_START.match(head)):
        return None  # the model skipped the body and went on with the code after it
    statement = _statement_end(lines, first, ctx, plan)
    end = statement + 1
    while end < len(lines) and (
        not lines[end].strip() or ctx.width(_leading(lines[end])) > first_width
    ):
        end += 1
    shift = block_width + ctx.unit - first_width
    out = lines[:first]
    for i in range(first, end):
        line = lines[i]
        if not line.strip():
            out.append("")
        else:
            # Line 0 on a blank cursor line is relative to the cursor; shift it all the same.
            width = max(0, ctx.width(_leading(line)) + shift)
            out.append(ctx.make_indent(width) + line.lstrip(" \t"))
    return out


def _statement_end(lines: list[str], start: int, ctx: _Context, plan: CompletionPlan) -> int:
    """Index of the last line of the statement starting at ``start`` (brackets it opened)."""
    end = start
    while (
        end + 1 < len(lines)
        and end - start + 1 < plan.max_lines
        and _brackets("\n".join(lines[start : end + 1]), ctx.comment)[0]
    ):
        end += 1
    return end


def _limit_statement(
    lines: list[str], ctx: _Context, blank_cursor: bool, plan: CompletionPlan
) -> list[str]:
    """The current statement: one line, longer while its own brackets are open, plus a body
    when the statement opens a block."""
    start = 0
    if not blank_cursor and not lines[0].strip():
        found = _first_code_line(lines, 1)
        if found is None:
            return lines[:1]
        start = found
    end = _statement_end(lines, start, ctx, plan)
    kept = lines[: end + 1]
    if opens_block(kept[-1], ctx.language) and end + 1 < len(lines):
        opener_width = _eff_width(lines, start, ctx, blank_cursor)
        rest = lines[end + 1 :]
        body_first = _first_code_line(rest, 0)
        if body_first is not None and ctx.width(_leading(rest[body_first])) > opener_width:
            # The suggestion opened this block itself, so its closing line belongs to it.
            body = _take_body(rest, ctx, opener_width, need_closer=True)
            kept += body
    return kept


def _drop_repeats(lines: list[str]) -> list[str]:
    """Cut a block of lines that the model immediately repeats (small models loop)."""
    keys = [line.rstrip() for line in lines]
    for i in range(len(keys)):
        for size in range(1, (len(keys) - i) // 2 + 1):
            block = keys[i : i + size]
            if any(block) and block == keys[i + size : i + 2 * size]:
                return lines[: i + size]
    return lines


def _repeats_above(result: str, ctx: _Context, blank_cursor: bool) -> bool:
    """True when the suggestion only re-types the lines just above the cursor."""
    lines = result.split("\n")
    if blank_cursor:
        lines[0] = ctx.line_prefix + lines[0]
        above = list(ctx.lines_above)
    elif not lines[0].strip():
        lines = lines[1:]
        above = [*ctx.lines_above, ctx.line_prefix]
    else:
        return False
    new = [line.rstrip() for line in lines if line.strip()]
    old = [line.rstrip() for line in above if line.strip()][-len(new) :] if new else []
    return bool(new) and new == old
