"""Cut-short generations: the forms of a partial suggestion worth verifying.

A generation stopped by the time budget may end mid-word or mid-call; these helpers
give its forms that can stand on their own ("json.load(f" -> "json.load").
"""

from __future__ import annotations

import keyword
import re

from lsp.core.pipeline_types import Cursor
from lsp.core.text.clean import opens_block
from model.runtime.prompt import comment_syntax

# A generation cut by the time budget may end inside a word: that word is dropped.
_PARTIAL_WORD = re.compile(r"[A-Za-z0-9_]+$")


def without_partial_word(text: str) -> str:
    return _PARTIAL_WORD.sub("", text)


_CUT_AFTER = re.compile(r"[\w)\]}'\"]")


# Keywords a line may end with; every other keyword wants something after it.
_ENDING_KEYWORDS = frozenset({"None", "True", "False", "pass", "break", "continue", "return"})


def _dangling(word: str) -> bool:
    return keyword.iskeyword(word) and word not in _ENDING_KEYWORDS


def balanced_cuts(text: str, limit: int = 3) -> list[str]:
    """Forms of a cut-off suggestion ending where its brackets and quotes balance.

    The text itself comes first when it balances; then shorter forms, cut in the last line
    only (earlier lines are whole); longest first, at most ``limit``. A suggestion cut
    mid-call ("json.load(") may pass the syntax check, because the buffer is already
    incomplete at the cursor while the user types: only balanced forms are offered.
    """
    head, _, last = text.rpartition("\n")
    lead = head + "\n" if head or text.startswith("\n") else ""
    cuts: list[str] = []
    depth = 0
    quote: str | None = None
    for i, char in enumerate(last):
        if quote is not None:
            if char == quote and last[i - 1] != "\\":
                quote = None
            else:
                continue
        elif char in "\"'":
            quote = char
            continue
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth < 0:
                break  # it closes a bracket of the buffer: nothing after is safe to keep
        following = last[i + 1 : i + 2]
        word_goes_on = following.isalnum() or following == "_"
        if depth == 0 and _CUT_AFTER.match(char) and not word_goes_on:
            word = _PARTIAL_WORD.search(last[: i + 1])
            if word is None or not _dangling(word.group()):  # "x or" cannot end a line
                cuts.append(lead + last[: i + 1])
    return [cut for cut in reversed(cuts) if cut.strip()][:limit]


def comment_where_code_goes(cursor: Cursor, candidate: str) -> bool:
    """True for a suggestion that is only a comment where code follows the cursor, unless
    the user is writing a comment (small models love to narrate instead of coding)."""
    opener = comment_syntax(cursor.language)[0]
    line_prefix = cursor.prefix.rsplit("\n", 1)[-1]
    if opener in line_prefix:
        return False
    lines = [line for line in (line_prefix + candidate).split("\n") if line.strip()]
    if not lines or not all(line.lstrip().startswith(opener) for line in lines):
        return False
    below = cursor.suffix.split("\n")
    if below[0].strip():
        return True
    following = next((line for line in below[1:] if line.strip()), None)
    return following is not None and not following.lstrip().startswith(opener)


def trailing_blank(prefix: str) -> str:
    """Spaces or tabs the user typed after code on the cursor line (``"total "``), or "".

    Tokenizers glue a space to the word after it (``" ="``), so a prompt ending in a space
    asks the model for a token split it rarely saw: it writes worse code there. The prompt
    leaves these characters out, and the model writes them itself (token healing).
    """
    line = prefix.rsplit("\n", 1)[-1]
    if not line.strip():
        return ""
    return line[len(line.rstrip(" \t")) :]


def unheal(raw: str, blank: str) -> str:
    """The generation after the cursor: the typed ``blank`` the model wrote again, dropped."""
    if not blank:
        return raw
    if raw.startswith(blank):
        return raw[len(blank) :]
    return raw.lstrip(" \t") if raw[:1] in (" ", "\t") else raw


def _width(line: str) -> int:
    return len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip())


def cut_at_existing_body(candidate: str, cursor: Cursor) -> str:
    """Cut after a suggested line that opens a block whose body already follows below.

    A model that cannot see the code after the cursor writes the block's body itself
    (``for e in xs:`` and then a loop body), while the body the user wrote is right
    below; keeping only the opener lets that body belong to it.
    """
    below = cursor.suffix.split("\n")
    if below[0].strip():
        return candidate
    following = next((line for line in below[1:] if line.strip()), None)
    if following is None:
        return candidate
    depth = _width(following)
    lines = candidate.split("\n")
    line_prefix = cursor.prefix.rsplit("\n", 1)[-1]
    for i, line in enumerate(lines[:-1]):
        full = line_prefix + line if i == 0 else line
        if full.strip() and opens_block(full, cursor.language) and depth > _width(full):
            return "\n".join(lines[: i + 1])
    return candidate
