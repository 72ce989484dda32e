"""Shared fixtures: the embedded default model and markers' skip rules."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    """Path of the embedded default GGUF (assembled into the user cache on first use)."""
    from model.runtime.default_model import ensure_default_model

    return ensure_default_model()
