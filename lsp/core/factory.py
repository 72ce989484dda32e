"""The one place the completion pipeline's settings are made from the server's settings.

The language server, ``apprentice complete`` and ``apprentice eval`` all start from
``ServerSettings`` (the editor's settings, every one defaulted) and build their model and
pipeline settings here, so a one-off command shows what the editor would; command-line
flags override settings, never a second set of defaults.
"""

from __future__ import annotations

from lsp.core.coldstart import FIRST_PROMPT_TOKENS
from lsp.core.pipeline_types import PipelineSettings
from lsp.core.settings import ServerSettings
from model.factory import BackendSettings
from model.runtime.hardware import interactive_threads, physical_cores


def backend_settings(settings: ServerSettings) -> BackendSettings:
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
        snapshot_mb=model.snapshot_memory_mb,
        # A remote server's every request, the model list at load included, ends by then.
        request_timeout=max(settings.completion.timeout_ms, 1) / 1000,
    )


def pipeline_settings(settings: ServerSettings) -> PipelineSettings:
    """The completion section of the server settings, as the pipeline's own settings."""
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
        first_prompt_tokens=FIRST_PROMPT_TOKENS,
    )
