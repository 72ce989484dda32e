"""The torch embedder: all-MiniLM-L6-v2 through sentence-transformers, where it is installed.

Not needed to serve: the default embedder runs on ONNX Runtime (``indexer.embed``).
sentence-transformers and torch come with the ``train`` extra; without them creating
this embedder raises an EmbedderError that names the install command.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from indexer.embed import (
    DEFAULT_MAX_SEQ_LENGTH,
    MODEL_DIM,
    MODEL_ID,
    TRAIN_EXTRA_FIX,
    EmbedderError,
    default_embed_threads,
    force_offline,
    model_dir,
)


class TorchEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers and torch: the slower, optional fallback."""

    def __init__(
        self,
        source: Path | None = None,
        *,
        max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
        threads: int | None = None,
        batch_size: int = 32,
    ) -> None:
        source = source or model_dir()
        force_offline()
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbedderError(
                f"the torch embedder needs sentence-transformers, which cannot be imported "
                f"({exc}); "
                f"it comes with the train extra: {TRAIN_EXTRA_FIX}"
            ) from None
        self._torch = torch
        self.threads = threads or default_embed_threads()
        self.batch_size = batch_size
        torch.set_num_threads(self.threads)
        self._model = SentenceTransformer(str(source), device="cpu", local_files_only=True)
        self._model.max_seq_length = max_seq_length
        self.dim = int(self._model.get_embedding_dimension() or MODEL_DIM)
        self.name = f"{MODEL_ID}/torch/{max_seq_length}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts``; sentence-transformers batches them sorted by length."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # torch's thread count is process-wide; someone else may have changed it.
        self._torch.set_num_threads(self.threads)
        with self._torch.inference_mode():
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        """The vector of one query."""
        return self.embed([text])[0]
