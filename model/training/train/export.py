"""The trained LoRA as a llama.cpp adapter GGUF (written atomically, never left truncated).

llama.cpp's adapter layout: the base's tensor names (``blk.N.attn_q.weight``) with
``.lora_a`` / ``.lora_b`` appended, holding peft's A (rank x in) and B (out x rank) as
they are; ``general.type=adapter``, ``adapter.type=lora`` and ``adapter.lora.alpha``
(llama.cpp scales by alpha / rank, as peft does).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from model.checkpoints.atomic_io import WriteError, fsync_directory
from model.training.train.base import BaseModel, TrainingError

logger = logging.getLogger(__name__)

# peft's name of one LoRA factor: ...model.layers.3.self_attn.q_proj.lora_A.default.weight
_PEFT_NAME = re.compile(r"(?:.*?\.)?(model\.layers\.\d+\.[\w.]+?)\.lora_([AB])(?:\.\w+)?\.weight$")


def adapter_tensors(lora: dict[str, Any], base: BaseModel) -> dict[str, Any]:
    """peft's LoRA tensors renamed to llama.cpp's adapter names, as float16 numpy arrays.

    Half precision halves the shipped file (r=16 on every projection of Gemma 3 270M:
    7.6 MB instead of 15.2 MB); llama.cpp computes with it as with its own f16 adapters, and
    the export gate (``model.training.train.agree``) checks the result against the torch model.
    """
    import gguf

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA3, base.blocks)
    out: dict[str, Any] = {}
    for name, tensor in lora.items():
        match = _PEFT_NAME.match(name)
        if match is None:
            raise TrainingError(f"unexpected LoRA tensor {name}")
        module, factor = match.groups()
        target = names.get_name(module)
        if target is None:
            raise TrainingError(f"no llama.cpp tensor for {module}")
        array = tensor.detach().to("cpu").half().contiguous().numpy()
        out[f"{target}.weight.lora_{factor.lower()}"] = array
    for key in out:
        pair = key[:-1] + ("b" if key.endswith("a") else "a")
        if pair not in out:
            raise TrainingError(f"LoRA tensor {key} has no {pair}")
    return out


def write_adapter_gguf(
    path: Path, tensors: dict[str, Any], alpha: float, base: BaseModel, *, name: str
) -> None:
    """Write the adapter GGUF at ``path``: a temp file beside it, renamed only when whole."""
    import gguf

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as error:
        raise WriteError(f"cannot write {path}: {error.strerror or error}") from None
    tmp = Path(tmp_name)
    try:
        writer = gguf.GGUFWriter(str(tmp), base.architecture)
        writer.add_string("general.type", "adapter")
        writer.add_string("general.name", name)
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", float(alpha))
        for key in sorted(tensors):
            writer.add_tensor(key, tensors[key])
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with open(tmp, "rb+") as handle:
            os.fchmod(handle.fileno(), 0o644)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(error, OSError):
            reason = "no space left on the device" if error.errno == 28 else str(error)
            raise WriteError(f"cannot write {path}: {reason}; nothing was written") from None
        raise
    fsync_directory(path.parent)
    logger.info("wrote %s (%d tensors)", path, len(tensors))
