"""Exports all-MiniLM-L6-v2 to ONNX (traced, int8 weights), run as a child process.

``python -m indexer.onnx_export SOURCE OUT [--quantize=0|1] [--fuse=0|1]`` writes
``OUT/model.onnx`` and ``OUT/manifest.json`` from the local safetensors, offline.
``indexer.embed`` runs it once into a temporary directory and renames that into
the cache; torch is imported here only, never in the process that embeds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from indexer.embed import (
    DEFAULT_MAX_SEQ_LENGTH,
    MANIFEST,
    MODEL_FILE,
    MODEL_ID,
    ONNX_RECIPE_VERSION,
    OnnxRecipe,
    force_offline,
    normalise_rows,
    package_version,
)


def export_onnx(source: Path, out_dir: Path, recipe: OnnxRecipe) -> None:
    """Trace the model with mean pooling to ONNX, optionally fuse, quantize, verify, clean up."""
    import warnings

    import onnx
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from tokenizers import Tokenizer
    from transformers import AutoModel

    # The legacy tracer's deprecation and tracer warnings are expected and harmless here.
    warnings.filterwarnings("ignore")
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    # Eager attention traces to the pattern ONNX Runtime's attention fusion recognises.
    bert = AutoModel.from_pretrained(
        str(source), local_files_only=True, attn_implementation="eager"
    ).eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)

    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    tokenizer.enable_truncation(DEFAULT_MAX_SEQ_LENGTH * 2)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")

    def batch(texts: list[str]) -> dict[str, np.ndarray]:
        encodings = tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}

    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = batch(["def add(a, b):\n    return a + b", "x"])
    raw = out_dir / "raw.onnx"
    torch.onnx.export(
        MeanPooled().eval(),
        tuple(torch.from_numpy(example[n]) for n in names),
        str(raw),
        input_names=names,
        output_names=["sentence_embedding"],
        dynamic_axes={**{n: {0: "batch", 1: "seq"} for n in names}, "sentence_embedding": {0: "b"}},
        opset_version=17,
        dynamo=False,
    )
    current = raw
    if recipe.fuse:
        from onnxruntime.transformers.optimizer import optimize_model

        fused = optimize_model(
            str(raw),
            model_type="bert",
            num_heads=int(config["num_attention_heads"]),
            hidden_size=int(config["hidden_size"]),
            opt_level=1,
        )
        if not fused.get_fused_operator_statistics().get("Attention"):
            raise RuntimeError("ONNX Runtime did not fuse the attention layers")
        current = out_dir / "fused.onnx"
        fused.save_model_to_file(str(current))
    final = out_dir / MODEL_FILE
    if recipe.quantize:
        # Per-channel weights keep cosine ~0.994 to fp32; per-tensor dropped it to ~0.95.
        quantize_dynamic(
            str(current),
            str(final),
            per_channel=True,
            weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    else:
        current.replace(final)

    # Dynamic int8 scales activations per batch, so texts are checked one at a time;
    # very short texts drift most (cosine ~0.97 for three tokens), code and queries ~0.995.
    session = ort.InferenceSession(str(final), providers=["CPUExecutionProvider"])
    inputs = {i.name for i in session.get_inputs()}
    cosines = []
    for text in ["parse a date string", "class Cart:\n    def add(self, item):\n" * 30]:
        feed = batch([text])
        with torch.inference_mode():
            expected = MeanPooled()(*(torch.from_numpy(feed[n]) for n in names)).numpy()
        got = session.run(["sentence_embedding"], {k: v for k, v in feed.items() if k in inputs})
        cosines.append(float((normalise_rows(got[0]) * normalise_rows(expected)).sum()))
    cosine = np.array(cosines)
    floor = 0.98 if recipe.quantize else 0.9999
    if float(cosine.min()) < floor:
        raise RuntimeError(f"exported model disagrees with torch (cosine {cosine.min():.4f})")
    for leftover in out_dir.iterdir():
        if leftover.name != MODEL_FILE:
            leftover.unlink()
    manifest = {
        "model": MODEL_ID,
        "recipe": recipe.tag,
        "recipe_version": ONNX_RECIPE_VERSION,
        "min_cosine_to_torch": round(float(cosine.min()), 5),
        "versions": {
            d: package_version(d) for d in ("onnxruntime", "onnx", "torch", "transformers")
        },
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    """Export as the arguments say; exit status 2 with a one-line reason on stderr on failure."""
    if len(argv) < 2:
        sys.stderr.write(__doc__ or "")
        return 1
    flags = dict(arg.lstrip("-").split("=", 1) for arg in argv[2:])
    default = OnnxRecipe()
    recipe = OnnxRecipe(
        quantize=flags.get("quantize", str(int(default.quantize))) == "1",
        fuse=flags.get("fuse", str(int(default.fuse))) == "1",
    )
    force_offline()
    try:
        export_onnx(Path(argv[0]), Path(argv[1]), recipe)
    except Exception as exc:
        sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
