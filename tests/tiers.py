"""The guards behind the test tiers (tests/conftest.py): what a test reaches without asking.

Installed once, when the conftest is imported, and armed per test by its hooks:

* the embedded Gemma: ``ensure_default_model`` refuses, wherever a module holds it, unless
  a test swapped the model's package out (the tests of the assembly do); subprocesses of
  a test in neither tier get the stand-in package of tests/model_guard, on PYTHONPATH;
* the embedding model, where it is slow: its ONNX export refuses to start, and the ONNX and
  torch embedders refuse once they have loaded, the real all-MiniLM-L6-v2 (its directory may
  still be named, as cache keys and the embedder's identity do; its package in subprocesses
  is left alone: the identity a server computes at start-up names it);
* servers and editors: ``subprocess.Popen`` refuses to start ``apprentice serve``,
  ``llama_cpp.server``, Neovim or code-server.

A refusal is raised where it happens and kept: the conftest fails the test with it even
when a worker thread or a broad ``except`` swallowed it.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer import embed, embed_torch
from model.runtime import default_model
from tests.model_guard.model_refusal import HERE as STAND_INS
from tests.model_guard.model_refusal import MESSAGE, ModelNotRequested

__all__ = ["GUARD", "STAND_INS", "install", "real_default_model", "real_minilm_dir"]


@dataclass
class Guard:
    """What the running test may use, and what it reached without asking."""

    model: bool = False
    server: bool = False
    violations: list[str] = field(default_factory=list)

    def arm(self, *, model: bool, server: bool) -> None:
        self.model, self.server = model, server
        self.violations.clear()

    def refuse(self, message: str) -> None:
        self.violations.append(message)
        raise ModelNotRequested(message)


GUARD = Guard()
real_default_model = default_model.ensure_default_model
real_minilm_dir = embed.model_dir
_REAL_IMPORT_PACKAGE = default_model._import_package
_REAL_PACKAGE = default_model.PACKAGE


def _installed_minilm() -> Path | None:
    try:
        return real_minilm_dir()
    except embed.EmbedderError:
        return None


_MINILM = _installed_minilm()


def _gemma_reached() -> None:
    real = default_model._import_package is _REAL_IMPORT_PACKAGE
    if real and default_model.PACKAGE == _REAL_PACKAGE and not GUARD.model:
        GUARD.refuse(MESSAGE.format("gemma_path"))


def _minilm_reached(source: Path | str | None) -> None:
    if not GUARD.model and _MINILM is not None and Path(source or embed.model_dir()) == _MINILM:
        GUARD.refuse(MESSAGE.format("minilm_dir"))


def _guarded(
    original: Callable[..., Any], check: Callable[..., None], *, loaded: bool = False
) -> Callable[..., Any]:
    """``original``, its arguments seen by ``check`` before the call, or (``loaded``) once it
    has returned: an embedder that fails before loading anything (a package missing) is
    left to say so itself."""

    @functools.wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if not loaded:
            check(*args, **kwargs)
        result = original(*args, **kwargs)
        if loaded:
            check(*args, **kwargs)
        return result

    return guarded


def server_in(args: Any) -> str | None:
    """The server or editor a command line starts, if it is one the ``e2e`` tier holds."""
    if isinstance(args, (str, bytes, os.PathLike)):
        args = [args]
    argv = [os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in args]
    program = Path(argv[0]).name if argv else ""
    modules = {argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "-m"}
    if ("lsp.cli" in modules or program == "apprentice") and "serve" in argv:
        return "apprentice serve: ask for the lsp_server fixture"
    if "llama_cpp.server" in modules:
        return "llama_cpp.server: ask for the served_model fixture"
    if program in ("nvim", "code-server"):
        return f"{program}: ask for the lsp_server fixture"
    return None


def _server_started(self: object, args: Any, *rest: Any, **kwargs: Any) -> None:
    started = None if GUARD.server else server_in(args)
    if started is not None:
        GUARD.refuse(f"this test starts {started}")


def install() -> None:
    """Put the guards in place, wherever a module already holds an original."""
    ensure = _guarded(real_default_model, lambda cache_dir=None: _gemma_reached())
    here = sys.modules[__name__]
    for module in list(sys.modules.values()):
        if module is here:
            continue
        for name, value in list(getattr(module, "__dict__", {}).items()):
            if value is real_default_model:
                setattr(module, name, ensure)
    embed._run_export = _guarded(  # type: ignore[assignment]
        embed._run_export, lambda source, *args, **kwargs: _minilm_reached(source)
    )
    onnx_init, torch_init = embed.OnnxEmbedder.__init__, embed_torch.TorchEmbedder.__init__
    embed.OnnxEmbedder.__init__ = _guarded(  # type: ignore[method-assign]
        onnx_init, lambda self, onnx_path, source, **kw: _minilm_reached(source), loaded=True
    )
    embed_torch.TorchEmbedder.__init__ = _guarded(  # type: ignore[method-assign]
        torch_init, lambda self, source=None, **kw: _minilm_reached(source), loaded=True
    )
    subprocess.Popen.__init__ = _guarded(  # type: ignore[method-assign]
        subprocess.Popen.__init__, _server_started
    )
