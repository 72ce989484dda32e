"""Build the configured Backend: the embedded model, a checkpoint, a GGUF (+LoRA), or a remote."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from model.checkpoints.checkpoint import Policy, ResolvedModel, resolve_model
from model.checkpoints.verification import check_pinned
from model.runtime.api import Backend, ModelError


@dataclass(frozen=True)
class BackendSettings:
    """Everything that chooses and tunes a backend; all optional, all defaulted."""

    model_path: str | None = None
    lora_path: str | None = None
    remote_url: str | None = None
    remote_model: str | None = None
    n_ctx: int = 4096
    n_threads: int | None = None
    # Threads while the machine's other cores are idle (None: n_threads always).
    n_threads_max: int | None = None
    n_gpu_layers: int = 0
    request_timeout: float = 30.0
    # Memory for llama.cpp KV snapshots of earlier prompts (0: none).
    snapshot_mb: int = 256
    # What model_path names, already resolved and verified (resolve_model); None: resolved
    # here from model_path and lora_path under the signature policy below.
    resolved: ResolvedModel | None = None
    trusted_keys: tuple[str, ...] = ()
    require_signature: bool = False

    def resolve(self) -> ResolvedModel:
        """The local model these settings name, verified (CheckpointError when it fails)."""
        if self.resolved is not None:
            return self.resolved
        try:
            policy = Policy.from_specs(self.trusted_keys, self.require_signature)
        except ValueError as error:
            raise ModelError(f"a trusted key is unusable: {error}") from None
        return resolve_model(self.model_path, lora=self.lora_path, policy=policy)


def create_backend(settings: BackendSettings) -> Backend:
    """The backend the settings describe; the embedded Gemma 3 270M when nothing is set."""
    if settings.remote_url:
        from model.runtime.remote import RemoteBackend

        return RemoteBackend(
            settings.remote_url,
            model=settings.remote_model,
            read_timeout=settings.request_timeout,
            # The whole exchange, not only each read: a server trickling bytes is cut off.
            request_timeout=settings.request_timeout,
            context_length=settings.n_ctx,
            # The local worker's sampling: llama.cpp's OpenAI server otherwise applies 1.1,
            # and a student served there would answer differently from the same checkpoint here.
            repeat_penalty=1.0,
        )
    from model.runtime.llama_backend import LlamaConfig, LlamaCppBackend

    resolved = settings.resolve()
    n_ctx = settings.n_ctx
    if resolved.context_length:
        n_ctx = min(n_ctx, resolved.context_length)
    config = LlamaConfig(
        model_path=resolved.gguf,
        n_ctx=n_ctx,
        n_threads=settings.n_threads,
        n_threads_max=settings.n_threads_max,
        n_gpu_layers=settings.n_gpu_layers,
        snapshot_mb=settings.snapshot_mb,
        loras=tuple((lora.path, lora.scale) for lora in resolved.loras),
        stops=resolved.stops,
        fim_declared=resolved.fim_declared,
        fim_template=resolved.fim,
        name=resolved.manifest.label if resolved.manifest else None,
        before_load=functools.partial(check_pinned, resolved.pins()),
    )
    return LlamaCppBackend(config)
