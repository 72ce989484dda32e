"""Exports all-MiniLM-L6-v2 to ONNX (written from the weights, int8 by default), as a child.

``python -m indexer.onnx_export SOURCE OUT [--quantize=0|1] [--fuse=0|1]`` writes
``OUT/model.onnx`` and ``OUT/manifest.json`` from the local safetensors, offline.
The graph is built node by node (``indexer.minilm_graph``), so the export needs onnx,
ONNX Runtime, numpy and tokenizers, and neither torch nor transformers. ``indexer.embed``
runs it once into a temporary directory and renames that into the cache; running it
in a child keeps a crash in quantization, and the memory the export touches, out of
the process that embeds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

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
from indexer.minilm_graph import OUTPUT, build_model, load_bert, reference_embedding

# Checked one at a time against the numpy reference: dynamic int8 scales activations per
# batch, and very short texts drift most (cosine ~0.97 for three tokens), code and
# queries ~0.995.
CHECK_TEXTS = ("parse a date string", "class Cart:\n    def add(self, item):\n" * 30)


def export_onnx(source: Path, out_dir: Path, recipe: OnnxRecipe) -> float:
    """Write the graph, optionally fuse and quantize, check it against numpy, clean up.

    Returns the lowest cosine between the exported model and the reference.
    """
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from tokenizers import Tokenizer

    weights, shape = load_bert(source)
    raw = out_dir / "raw.onnx"
    onnx.save_model(build_model(weights, shape, for_fusion=recipe.fuse), str(raw))
    current = raw
    if recipe.fuse:
        from onnxruntime.transformers.optimizer import optimize_model

        # opt_level 0: the optimizer's Python fusions alone. Level 1 first runs ONNX
        # Runtime's basic optimizations through a helper that imports torch.
        fused = optimize_model(
            str(raw),
            model_type="bert",
            num_heads=shape.heads,
            hidden_size=shape.hidden,
            opt_level=0,
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

    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    tokenizer.no_padding()  # tokenizer.json pads every text to 128 tokens
    tokenizer.enable_truncation(DEFAULT_MAX_SEQ_LENGTH * 2)
    session = ort.InferenceSession(str(final), providers=["CPUExecutionProvider"])
    inputs = {i.name for i in session.get_inputs()}
    cosines = []
    for text in CHECK_TEXTS:
        encoding = tokenizer.encode(text)
        ids = np.array([encoding.ids], dtype=np.int64)
        mask = np.ones_like(ids)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (got,) = session.run([OUTPUT], {k: v for k, v in feed.items() if k in inputs})
        expected = reference_embedding(weights, shape, ids, mask)
        cosines.append(float((normalise_rows(got) * normalise_rows(expected)).sum()))
    cosine = min(cosines)
    floor = 0.98 if recipe.quantize else 0.9999
    if cosine < floor:
        raise RuntimeError(
            f"exported model disagrees with its numpy reference (cosine {cosine:.4f})"
        )
    for leftover in out_dir.iterdir():
        if leftover.name != MODEL_FILE:
            leftover.unlink()
    manifest = {
        "model": MODEL_ID,
        "recipe": recipe.tag,
        "recipe_version": ONNX_RECIPE_VERSION,
        "min_cosine_to_reference": round(cosine, 5),
        "versions": {d: package_version(d) for d in ("onnxruntime", "onnx", "numpy")},
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return cosine


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
