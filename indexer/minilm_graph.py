"""all-MiniLM-L6-v2 written out as an ONNX graph from its safetensors weights, without torch.

The weights are read straight from ``model.safetensors`` (see ``read_safetensors``) and
the BERT encoder is spelled out node by node with ``onnx.helper``. The graph keeps the
interface the traced export had, so ``OnnxEmbedder`` feeds it unchanged: ``input_ids``,
``attention_mask`` and ``token_type_ids`` (int64, batch x seq) in, ``sentence_embedding``
(float32, batch x hidden: the mean of the token states under the mask, not normalised)
out. Its shape follows the traced graph too (linear layers as MatMul + Add with the
weight transposed, embedding tables read by Gather), so ONNX Runtime's dynamic int8
quantization treats it the same way: the int8 vectors came out bit for bit those of the
traced export. ``reference_embedding`` computes the same vectors in numpy: the export
checks the graph it wrote against it.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

OPSET = 17
# IR 8 is what opset 17 needs; a newer onnx package would otherwise stamp an IR version
# that older ONNX Runtime releases refuse to open.
IR_VERSION = 8
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT = "sentence_embedding"
_MAX_HEADER = 100 * 1024 * 1024
# safetensors dtype -> (numpy dtype of the stored bytes, bytes per element)
_DTYPES: dict[str, tuple[str, int]] = {
    "F64": ("<f8", 8),
    "F32": ("<f4", 4),
    "F16": ("<f2", 2),
    "BF16": ("<u2", 2),
    "I64": ("<i8", 8),
    "I32": ("<i4", 4),
    "I16": ("<i2", 2),
    "I8": ("i1", 1),
    "U8": ("u1", 1),
    "BOOL": ("?", 1),
}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as a numpy array; floats of 16 bits become float32.

    The format is small enough to read without the ``safetensors`` package (which the
    server would otherwise need only for this): 8 bytes of little-endian header length,
    a JSON header mapping each name to its dtype, shape and byte range, then the data.
    Raises ValueError on anything that does not add up.
    """
    blob = path.read_bytes()
    if len(blob) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (size,) = struct.unpack("<Q", blob[:8])
    if size > min(_MAX_HEADER, len(blob) - 8):
        raise ValueError(f"{path}: safetensors header length {size} does not fit the file")
    try:
        header = json.loads(blob[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: the safetensors header is not an object")
    data = memoryview(blob)[8 + size :]
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, width = _DTYPES[info["dtype"]]
            shape = [int(d) for d in info["shape"]]
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: tensor {name!r} has an unsupported entry {info}") from None
        count = math.prod(shape)
        if not 0 <= begin <= end <= len(data) or end - begin != count * width:
            raise ValueError(f"{path}: tensor {name!r} has byte range {begin}..{end}, not {shape}")
        array = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape)
        if info["dtype"] == "BF16":  # the high half of a float32
            array = (array.astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] == "F16":
            array = array.astype(np.float32)
        tensors[name] = array
    return tensors


@dataclass(frozen=True)
class BertShape:
    """The few numbers of ``config.json`` the graph depends on."""

    hidden: int
    heads: int
    layers: int
    eps: float

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BertShape:
        """Read a BERT config, refusing variants this graph does not spell out."""
        if config.get("model_type", "bert") != "bert":
            raise ValueError(f"not a BERT model: {config.get('model_type')!r}")
        if config.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"unsupported activation {config.get('hidden_act')!r}")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported")
        shape = cls(
            hidden=int(config["hidden_size"]),
            heads=int(config["num_attention_heads"]),
            layers=int(config["num_hidden_layers"]),
            eps=float(config.get("layer_norm_eps", 1e-12)),
        )
        if shape.hidden % shape.heads:
            raise ValueError(f"hidden size {shape.hidden} is not divisible by {shape.heads} heads")
        return shape


def load_bert(source: Path) -> tuple[dict[str, np.ndarray], BertShape]:
    """The weights (names without a ``bert.`` prefix) and shape of the model in ``source``."""
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    raw = read_safetensors(source / "model.safetensors")
    weights = {name.removeprefix("bert."): array for name, array in raw.items()}
    return weights, BertShape.from_config(config)


class _Builder:
    """Collects nodes and initializers; every ``op`` returns the name of its one output."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = weights
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._names: set[str] = set()

    def tensor(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        if name not in self._names:
            self._names.add(name)
            self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def weight(self, name: str, *, transpose: bool = False) -> str:
        try:
            value = self.weights[name]
        except KeyError:
            raise ValueError(f"the weights have no tensor {name!r}") from None
        value = value.astype(np.float32, copy=False)
        return self.tensor(name + (".T" if transpose else ""), value.T if transpose else value)

    def const(self, name: str, value: float | int | list[int]) -> str:
        dtype = np.float32 if isinstance(value, float) else np.int64
        return self.tensor("const/" + name, np.array(value, dtype=dtype))

    def op(self, op_type: str, name: str, *inputs: str, output: str = "", **attrs: Any) -> str:
        from onnx import helper

        output = output or name
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=name, **attrs))
        return output

    def linear(self, x: str, prefix: str) -> str:
        """``x @ W.T + b`` for the torch Linear layer whose weights are under ``prefix``."""
        product = self.op(
            "MatMul", f"{prefix}/MatMul", x, self.weight(prefix + ".weight", transpose=True)
        )
        return self.op("Add", f"{prefix}/Add", product, self.weight(prefix + ".bias"))

    def layer_norm(self, x: str, prefix: str, eps: float) -> str:
        return self.op(
            "LayerNormalization",
            f"{prefix}/LayerNorm",
            x,
            self.weight(prefix + ".weight"),
            self.weight(prefix + ".bias"),
            axis=-1,
            epsilon=eps,
        )


def _embeddings(b: _Builder, shape: BertShape) -> str:
    words = b.op(
        "Gather", "embeddings/words", b.weight("embeddings.word_embeddings.weight"), "input_ids"
    )
    types = b.op(
        "Gather",
        "embeddings/types",
        b.weight("embeddings.token_type_embeddings.weight"),
        "token_type_ids",
    )
    # Positions 0..seq-1 sliced from a constant, as the trace had them: ONNX Runtime 1.32's
    # extended optimizations rewrite a Gather over Range(0, seq) into a Slice that fails.
    table = b.weight("embeddings.position_embeddings.weight")
    every = np.arange(len(b.weights[table]), dtype=np.int64)
    length = b.op("Shape", "embeddings/length", "input_ids", start=1, end=2)
    ids = b.op(
        "Slice",
        "embeddings/position_ids",
        b.tensor("embeddings.position_ids", every),
        b.const("zero_1d", [0]),
        length,
    )
    placed = b.op("Gather", "embeddings/positions", table, ids)
    total = b.op("Add", "embeddings/add_types", words, types)
    total = b.op("Add", "embeddings/add_positions", total, placed)
    return b.layer_norm(total, "embeddings.LayerNorm", shape.eps)


def _attention_bias(b: _Builder, for_fusion: bool) -> str:
    """0 where the mask keeps a token, the lowest float32 where it hides one.

    Spelled ``(1 - mask) * lowest`` after two Unsqueezes, the form ONNX Runtime's BERT
    optimizer recognises when it fuses attention: that leaves (batch, 1, 1, seq). Unfused,
    it is spread to (batch, 1, seq, seq) once, as the trace had it: ONNX Runtime's Add
    broadcasting the narrower one onto the scores made the int8 model ~12% slower.
    """
    mask = b.op("Unsqueeze", "mask/unsqueeze_1", "attention_mask", b.const("axis_1", [1]))
    mask = b.op("Unsqueeze", "mask/unsqueeze_2", mask, b.const("axis_2", [2]))
    mask = b.op("Cast", "mask/cast", mask, to=1)  # TensorProto.FLOAT
    hides = b.op("Sub", "mask/hides", b.const("one_f", 1.0), mask)
    lowest = float(np.finfo(np.float32).min)
    bias = b.op("Mul", "mask/bias", hides, b.const("lowest", lowest))
    if for_fusion:
        return bias
    batch = b.op("Shape", "mask/batch", "attention_mask", start=0, end=1)
    seq = b.op("Shape", "mask/seq", "attention_mask", start=1, end=2)
    square = b.op("Concat", "mask/square", batch, b.const("one_1d", [1]), seq, seq, axis=0)
    return b.op("Expand", "mask/expand", bias, square)


def _layer(b: _Builder, x: str, bias: str, index: int, shape: BertShape) -> str:
    """One encoder layer: self-attention, residual + LayerNorm, GELU feed-forward, the same."""
    p = f"encoder.layer.{index}"
    head_dim = shape.hidden // shape.heads
    split = b.const("split_heads", [0, 0, shape.heads, head_dim])

    def heads(kind: str, perm: list[int]) -> str:
        projected = b.linear(x, f"{p}.attention.self.{kind}")
        split_up = b.op("Reshape", f"{p}/{kind}/Reshape", projected, split)
        return b.op("Transpose", f"{p}/{kind}/Transpose", split_up, perm=perm)

    query = heads("query", [0, 2, 1, 3])  # batch, heads, seq, head_dim
    key = heads("key", [0, 2, 3, 1])  # batch, heads, head_dim, seq
    value = heads("value", [0, 2, 1, 3])
    scores = b.op("MatMul", f"{p}/scores", query, key)
    # Div, not Mul by the inverse: the optimizer's attention pattern takes the Mul beside
    # this Add for the mask.
    scores = b.op("Div", f"{p}/scale", scores, b.const(f"sqrt_{head_dim}", math.sqrt(head_dim)))
    scores = b.op("Add", f"{p}/mask", scores, bias)
    probs = b.op("Softmax", f"{p}/softmax", scores, axis=-1)
    context = b.op("MatMul", f"{p}/context", probs, value)
    context = b.op("Transpose", f"{p}/context/Transpose", context, perm=[0, 2, 1, 3])
    merge = b.const("merge_heads", [0, 0, shape.hidden])
    context = b.op("Reshape", f"{p}/context/Reshape", context, merge)
    attended = b.linear(context, f"{p}.attention.output.dense")
    attended = b.op("Add", f"{p}/attention/residual", attended, x)
    x = b.layer_norm(attended, f"{p}.attention.output.LayerNorm", shape.eps)

    inner = b.linear(x, f"{p}.intermediate.dense")
    # GELU, the exact form: x * (1 + erf(x / sqrt 2)) / 2
    erf = b.op(
        "Erf",
        f"{p}/gelu/erf",
        b.op("Div", f"{p}/gelu/div", inner, b.const("sqrt2", math.sqrt(2.0))),
    )
    gelu = b.op(
        "Mul", f"{p}/gelu/mul", inner, b.op("Add", f"{p}/gelu/add", erf, b.const("one_f", 1.0))
    )
    gelu = b.op("Mul", f"{p}/gelu/half", gelu, b.const("half", 0.5))
    out = b.linear(gelu, f"{p}.output.dense")
    out = b.op("Add", f"{p}/output/residual", out, x)
    return b.layer_norm(out, f"{p}.output.LayerNorm", shape.eps)


def _mean_pool(b: _Builder, hidden: str) -> str:
    """The mean of the token states the mask keeps (at least 1e-9 tokens, as the trace had)."""
    mask = b.op("Unsqueeze", "pool/unsqueeze", "attention_mask", b.const("axes_last", [-1]))
    mask = b.op("Cast", "pool/cast", mask, to=1)  # TensorProto.FLOAT
    kept = b.op("Mul", "pool/mul", hidden, mask)
    axis = b.const("axes_seq", [1])
    total = b.op("ReduceSum", "pool/sum", kept, axis, keepdims=0)
    count = b.op("ReduceSum", "pool/count", mask, axis, keepdims=0)
    count = b.op("Clip", "pool/clip", count, b.const("tiny", 1e-9))
    return b.op("Div", "pool/mean", total, count, output=OUTPUT)


def build_model(
    weights: dict[str, np.ndarray], shape: BertShape, *, for_fusion: bool = False
) -> Any:
    """The mean-pooled BERT encoder as an ``onnx.ModelProto`` (float32 weights), checked.

    ``for_fusion`` shapes the mask as ONNX Runtime's attention fusion expects it.
    """
    import onnx
    from onnx import TensorProto, helper

    b = _Builder(weights)
    x = _embeddings(b, shape)
    bias = _attention_bias(b, for_fusion)
    for index in range(shape.layers):
        x = _layer(b, x, bias, index, shape)
    _mean_pool(b, x)
    graph = helper.make_graph(
        b.nodes,
        "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in INPUTS],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", shape.hidden])],
        b.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="apprentice.indexer.minilm_graph",
        ir_version=IR_VERSION,
    )
    onnx.checker.check_model(model)
    return model


# -- the same computation in numpy ---------------------------------------------------------


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to within 1.5e-7 (Abramowitz and Stegun 7.1.26): numpy has none of its own."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return sign * (1.0 - poly * np.exp(-a * a))


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _split_heads(x: np.ndarray, heads: int) -> np.ndarray:
    """batch x seq x hidden -> batch x heads x seq x head_dim."""
    batch, seq, hidden = x.shape
    return x.reshape(batch, seq, heads, hidden // heads).transpose(0, 2, 1, 3)


def reference_embedding(
    weights: dict[str, np.ndarray], shape: BertShape, ids: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """What the graph computes for one batch (token types all 0), in float64 numpy.

    The export's yardstick: written apart from the graph, it catches a node wired
    wrongly and a runtime that computes an operator differently.
    """

    def w(name: str) -> np.ndarray:
        return weights[name].astype(np.float64)

    def linear(x: np.ndarray, prefix: str) -> np.ndarray:
        return x @ w(prefix + ".weight").T + w(prefix + ".bias")

    def norm(x: np.ndarray, prefix: str) -> np.ndarray:
        return _layer_norm(x, w(prefix + ".weight"), w(prefix + ".bias"), shape.eps)

    x = (
        weights["embeddings.word_embeddings.weight"][ids].astype(np.float64)
        + w("embeddings.token_type_embeddings.weight")[0]
        + w("embeddings.position_embeddings.weight")[: ids.shape[1]]
    )
    x = norm(x, "embeddings.LayerNorm")
    bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e30)
    root = math.sqrt(shape.hidden // shape.heads)
    for index in range(shape.layers):
        p = f"encoder.layer.{index}.attention"
        query, key, value = (
            _split_heads(linear(x, f"{p}.self.{kind}"), shape.heads)
            for kind in ("query", "key", "value")
        )
        scores = query @ key.transpose(0, 1, 3, 2) / root + bias
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ value).transpose(0, 2, 1, 3).reshape(x.shape)
        x = norm(linear(context, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
        p = f"encoder.layer.{index}"
        inner = linear(x, f"{p}.intermediate.dense")
        gelu = inner * (1.0 + _erf(inner / math.sqrt(2.0))) / 2.0
        x = norm(linear(gelu, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
    keep = mask[:, :, None].astype(np.float64)
    return (x * keep).sum(1) / np.maximum(keep.sum(1), 1e-9)
