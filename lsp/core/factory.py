"""The one place the completion pipeline is made from the server's settings.

The language server, ``apprentice complete`` and ``apprentice eval`` all start from
``ServerSettings`` (the editor's settings, every one defaulted) and build their backend
settings, verifier and pipeline here, so a one-off command shows what the editor would;
command-line flags override settings, never a second set of defaults.

A one-off completion (``one_off``: ``apprentice complete``, ``apprentice eval --trigger
invoked``) differs from the server only where the server trades across requests for time,
never in what a request on a warm prompt suggests:

- no small first prompt (``first_prompt_tokens`` 0): the server answers a file's first
  request from one while it warms the full prompt for the next; nothing comes next here;
- no KV snapshots (``model.snapshotMemoryMb`` 0): no later request goes back to the prompt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from lint_bridge.api import CheckSettings
from lint_bridge.names import KnownSymbols
from lint_bridge.verify import Verifier
from lsp.core.coldstart import FIRST_PROMPT_TOKENS
from lsp.core.levers import lever
from lsp.core.pipeline import CompletionPipeline, ContextSource
from lsp.core.pipeline_types import PipelineSettings
from lsp.core.settings import ServerSettings, VerifySettings
from model.factory import BackendSettings
from model.runtime.api import Backend
from model.runtime.hardware import interactive_threads, physical_cores


def backend_settings(settings: ServerSettings, *, one_off: bool = False) -> BackendSettings:
    """The model section of the server settings, as the model package's own settings."""
    model = settings.model
    return BackendSettings(
        model_path=model.path,
        lora_path=model.lora,
        remote_url=model.remote_url,
        remote_model=model.remote_model,
        n_ctx=model.context_length,
        n_threads=model.threads or interactive_threads(),
        # Unless the user fixed the threads: every core while the others idle (a pause).
        n_threads_max=model.threads or physical_cores(),
        n_gpu_layers=model.gpu_layers,
        trusted_keys=model.trusted_keys,
        require_signature=model.require_signature,
        snapshot_mb=0 if one_off else model.snapshot_memory_mb,
        # A remote server's every request, the model list at load included, ends by then.
        request_timeout=max(settings.completion.timeout_ms, 1) / 1000,
    )


def pipeline_settings(settings: ServerSettings, *, one_off: bool = False) -> PipelineSettings:
    """The completion section of the server settings, as the pipeline's own settings.

    The levers keep their defaults (``lsp.core.levers``): they are no user setting.
    """
    completion = settings.completion
    return PipelineSettings(
        max_tokens=completion.max_tokens,
        max_tokens_multiline=completion.max_tokens_multiline,
        context_budget=completion.context_budget,
        fim_template=completion.fim_template,
        candidates=completion.candidates,
        timeout_s=max(completion.timeout_ms, 1) / 1000,
        time_budget_s=completion.time_budget_ms / 1000 if completion.time_budget_ms else None,
        max_wait_s=completion.max_wait_ms / 1000 if completion.max_wait_ms else None,
        multiline=completion.multiline,
        min_confidence=completion.min_confidence,
        first_prompt_tokens=0 if one_off else FIRST_PROMPT_TOKENS,
    )


def make_verifier(
    verify: VerifySettings,
    *,
    root: Path | None,
    known_symbols: KnownSymbols | None = None,
) -> Verifier | None:
    """The checks ``verify`` asks for (None: every one off, candidates shown unchecked)."""
    if not (verify.syntax or verify.ruff or verify.symbols):
        return None
    return Verifier(
        CheckSettings(syntax=verify.syntax, ruff=verify.ruff, symbols=verify.symbols),
        workspace_root=root,
        known_symbols=known_symbols,
    )


def build_pipeline(
    settings: ServerSettings,
    backend: Backend,
    *,
    root: Path | None,
    context: ContextSource | None = None,
    known_symbols: KnownSymbols | None = None,
    one_off: bool = False,
    levers: Mapping[str, bool] | None = None,
) -> CompletionPipeline:
    """The completion pipeline the settings describe, on ``backend``.

    ``root`` is the workspace (ruff's configuration, the verifier's imports); ``context``
    gives repository snippets; ``known_symbols`` tells the verifier what the repository
    defines. ``levers`` switches pipeline levers away from their defaults (``apprentice
    eval`` rows); ``one_off`` is a single request, not a session (see the module's note).
    """
    chosen = pipeline_settings(settings, one_off=one_off)
    if levers:
        for name in levers:
            if lever(name).acts_on != "pipeline":
                raise ValueError(f"lever {name!r} is an option of the context, not the pipeline")
        switched: dict[str, Any] = {name: bool(on) for name, on in levers.items()}
        chosen = replace(chosen, **switched)
    verifier = make_verifier(settings.verify, root=root, known_symbols=known_symbols)
    return CompletionPipeline(backend, chosen, verifier=verifier, context=context)
