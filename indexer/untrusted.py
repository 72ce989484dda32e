"""Repository text that must not steer the model: AI-tool instruction files, and characters a
reader cannot see.

A cloned repository is untrusted input. Files written as instructions for coding assistants
(``.cursorrules``, ``AGENTS.md``, ``.github/copilot-instructions.md`` ...) are prompt text by
design, so they are never indexed and never reach a prompt. Invisible characters (zero-width
spaces, joiners, word joiners, tag characters) and bidirectional controls (the "Trojan
Source" trick) hide text from the person reading the code while the model still reads it:
they are removed from every piece of repository context.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

# File names (any folder), lower-cased.
_INSTRUCTION_NAMES = frozenset(
    {
        ".cursorrules",
        ".windsurfrules",
        ".clinerules",
        ".roorules",
        ".aider.conf.yml",
        ".aiderignore",
        "agents.md",
        "agent.md",
        "claude.md",
        "claude.local.md",
        "gemini.md",
        "copilot-instructions.md",
        ".goosehints",
    }
)
# Folders whose files are all instructions (rules, prompts, agent settings).
_INSTRUCTION_DIRS = frozenset(
    {".cursor", ".windsurf", ".clinerules", ".roo", ".claude", ".continue", ".aider", ".kiro"}
)
# ``.github/instructions/*.instructions.md``, ``.github/prompts/*.prompt.md`` (VS Code Copilot).
_INSTRUCTION_SUFFIXES = (".instructions.md", ".prompt.md", ".chatmode.md")

# Zero-width and invisible formatting characters, bidirectional controls, tag characters
# (U+E0000 block: invisible ASCII look-alikes), variation selectors and the BOM.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f"
    "\U000e0100-\U000e01ef]"
)


def is_instruction_file(rel_path: str) -> bool:
    """Whether a repository path is an instruction file for an AI coding tool."""
    pure = PurePosixPath(rel_path.replace("\\", "/"))
    name = pure.name.lower()
    if name in _INSTRUCTION_NAMES or name.endswith(_INSTRUCTION_SUFFIXES):
        return True
    return any(part.lower() in _INSTRUCTION_DIRS for part in pure.parts[:-1])


def strip_invisible(text: str) -> str:
    """``text`` without invisible and bidirectional-control characters."""
    return _INVISIBLE.sub("", text)


def has_invisible(text: str) -> bool:
    """Whether ``text`` holds any character ``strip_invisible`` removes."""
    return _INVISIBLE.search(text) is not None
