"""Stand-in for the embedded Gemma's package (see tests/model_guard).

The digest is the installed package's: a checkpoint's binding to the embedded base compares
it without loading anything. The model's name and chunks lead to its file: they refuse.
"""

from __future__ import annotations

from typing import Any

from model_refusal import installed_package, refuse

EXPECTED_SHA256 = installed_package(__name__).EXPECTED_SHA256


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    refuse("gemma_path")
