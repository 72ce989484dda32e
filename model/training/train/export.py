"""The trained LoRA as a llama.cpp adapter GGUF (written atomically, never left truncated), and
a checkpoint's adapter read back into peft's tensors to continue training it.

llama.cpp's adapter layout: the base's tensor names (``blk.N.attn_q.weight``) with
``.lora_a`` / ``.lora_b`` appended, holding peft's A (rank x in) and B (out x rank);
``general.type=adapter``, ``adapter.type=lora`` and ``adapter.lora.alpha`` (llama.cpp scales
by alpha / rank, as peft does). Names come from gguf-py's tensor map of the base's
architecture (``arch.ARCHITECTURES``). For llama-family bases, whose ``attn_q`` / ``attn_k``
rows llama.cpp's converter permuted and transformers un-permuted on loading, B's rows of
those two are permuted back into llama.cpp's order (as llama.cpp's own LoRA converter does);
A is the same in both orders.
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
from model.training.train.arch import ARCHITECTURES, permute_rows
from model.training.train.base import BaseModel, TrainingError

logger = logging.getLogger(__name__)

# peft's name of one LoRA factor: ...model.layers.3.self_attn.q_proj.lora_A.default.weight
_PEFT_NAME = re.compile(r"(?:.*?\.)?(model\.layers\.\d+\.[\w.]+?)\.lora_([AB])(?:\.\w+)?\.weight$")
_ALPHA_KEY = "adapter.lora.alpha"


class _Names:
    """peft module names to llama.cpp tensor names for one base, and its q/k permutation."""

    def __init__(self, base: BaseModel) -> None:
        import gguf

        arch = ARCHITECTURES.get(base.architecture)
        if arch is None:
            raise TrainingError(f"no llama.cpp adapter layout for a {base.architecture} base")
        self.base = base
        self.permuted = arch.permuted_qk
        self.map = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.gguf_arch], base.blocks)

    def tensor(self, peft_name: str) -> tuple[str, str]:
        """(llama.cpp tensor name with its ``.lora_a``/``.lora_b``, factor ``A`` or ``B``)."""
        match = _PEFT_NAME.match(peft_name)
        if match is None:
            raise TrainingError(f"unexpected LoRA tensor {peft_name}")
        module, factor = match.groups()
        target = self.map.get_name(module)
        if target is None:
            raise TrainingError(f"no llama.cpp tensor for {module}")
        return f"{target}.weight.lora_{factor.lower()}", factor

    def heads_of(self, key: str, factor: str) -> int:
        """The heads to permute ``key``'s rows by (0: not permuted)."""
        if not self.permuted or factor != "B":
            return 0
        if ".attn_q." in key:
            return self.base.heads
        if ".attn_k." in key:
            return self.base.kv_heads or self.base.heads
        return 0


def adapter_tensors(lora: dict[str, Any], base: BaseModel) -> dict[str, Any]:
    """peft's LoRA tensors renamed to llama.cpp's adapter names, as float16 numpy arrays.

    Half precision halves the shipped file (r=16 on every projection of Gemma 3 270M:
    7.6 MB instead of 15.2 MB); llama.cpp computes with it as with its own f16 adapters, and
    the export gate (``model.training.train.agree``) checks the result against the torch model.
    """
    names = _Names(base)
    out: dict[str, Any] = {}
    for name, tensor in lora.items():
        key, factor = names.tensor(name)
        array = tensor.detach().to("cpu").float().numpy()
        heads = names.heads_of(key, factor)
        if heads:
            if not base.heads or array.shape[0] % (2 * heads):
                raise TrainingError(f"cannot order {key} for llama.cpp: {heads} heads")
            array = permute_rows(array, heads)
        out[key] = array.astype("float16").copy(order="C")
    for key in out:
        pair = key[:-1] + ("b" if key.endswith("a") else "a")
        if pair not in out:
            raise TrainingError(f"LoRA tensor {key} has no {pair}")
    return out


def read_adapter(path: Path, base: BaseModel, lora: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """A llama.cpp adapter GGUF as peft's tensors (float32, named as ``lora``'s), and its alpha.

    The reverse of ``adapter_tensors``: names mapped back, B of a llama-family q/k put back
    in transformers' row order. Raises TrainingError, in one line saying what to pass, when
    the adapter's tensors, rank or shapes are not those of the LoRA ``lora`` (the new run's
    freshly initialised tensors) describes.
    """
    import gguf
    import numpy as np
    import torch

    try:
        reader = gguf.GGUFReader(str(path))
    except (OSError, ValueError) as error:
        raise TrainingError(f"cannot read the adapter {path}: {error}") from None
    stored = {t.name: t for t in reader.tensors}
    field = reader.fields.get(_ALPHA_KEY)
    alpha = float(field.parts[-1][0]) if field is not None else 0.0
    names = _Names(base)
    wanted = {names.tensor(name)[0]: name for name in lora}
    # GGUF dims are reversed: an A of (rank x in) is stored as [in, rank].
    ranks = {int(t.shape[1]) for k, t in stored.items() if k.endswith(".lora_a")}
    first = next((t for n, t in lora.items() if names.tensor(n)[1] == "A"), None)
    rank = int(first.shape[0]) if first is not None else 0
    if ranks != {rank}:
        found = ",".join(str(r) for r in sorted(ranks)) or "none"
        raise TrainingError(
            f"{path.name} has LoRA rank {found}; continue it with --rank {found}"
            if len(ranks) == 1
            else f"{path.name} mixes LoRA ranks {found}: it cannot be continued"
        )
    if set(stored) != set(wanted):
        kinds = {k.split(".")[2] for k in stored if k.count(".") >= 3}
        roles = ARCHITECTURES[base.architecture].roles_of(kinds)
        raise TrainingError(
            f"{path.name} adapts other projections than the recipe's targets; continue it "
            f"with --targets {','.join(roles) or '(none it can name)'}"
        )
    out: dict[str, Any] = {}
    for key, name in wanted.items():
        array = np.asarray(stored[key].data, dtype=np.float32).reshape(lora[name].shape)
        heads = names.heads_of(key, names.tensor(name)[1])
        if heads:
            array = permute_rows(array, heads, inverse=True)
        out[name] = torch.from_numpy(np.ascontiguousarray(array))
    return out, alpha


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
        writer.add_float32(_ALPHA_KEY, float(alpha))
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
