"""Build the configured Backend: the embedded model, a user GGUF (plus LoRA), or a remote server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.api import Backend


@dataclass(frozen=True)
class BackendSettings:
    """Everything that chooses and tunes a backend; all optional, all defaulted."""

    model_path: str | None = None
    lora_path: str | None = None
    remote_url: str | None = None
    remote_model: str | None = None
    n_ctx: int = 4096
    n_threads: int | None = None
    n_gpu_layers: int = 0
    request_timeout: float = 30.0


def create_backend(settings: BackendSettings) -> Backend:
    """The backend the settings describe; the embedded Gemma 3 270M when nothing is set."""
    if settings.remote_url:
        from model.remote import RemoteBackend

        return RemoteBackend(
            settings.remote_url,
            model=settings.remote_model,
            read_timeout=settings.request_timeout,
            context_length=settings.n_ctx,
        )
    from model.default_model import resolve_model_path
    from model.llama_backend import LlamaConfig, LlamaCppBackend

    config = LlamaConfig(
        model_path=resolve_model_path(settings.model_path),
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
        n_gpu_layers=settings.n_gpu_layers,
        lora_path=Path(settings.lora_path).expanduser() if settings.lora_path else None,
    )
    return LlamaCppBackend(config)
