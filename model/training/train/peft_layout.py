"""The trained LoRA in PEFT's own layout: the folder vLLM's ``--lora-modules`` and peft load.

peft's ``save_pretrained`` writes it (the maintained tool, in safetensors, never pickle):
``adapter_config.json`` (rank, alpha, target modules, the base's name) and
``adapter_model.safetensors``. Apprentice's base is a GGUF that transformers read from a
folder of the trainer's machine, so peft would name that folder as the base; the config
names the base model instead (``base_name``: the GGUF's own name), and a config that still
holds an absolute path anywhere is refused. Only the two files of the layout are kept
(peft's README model card would repeat the local path and says nothing the checkpoint's
manifest does not). The folder is written under a temporary name and renamed.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path
from typing import Any

from model.checkpoints.atomic_io import fsync_directory
from model.checkpoints.manifest import CheckpointError
from model.checkpoints.peft_files import CONFIG_NAME, PEFT_FILES, peft_folder_files
from model.training.train.base import TrainingError

logger = logging.getLogger(__name__)

PEFT_FOLDER = "peft"  # beside adapter.gguf in the training output


def write_peft_adapter(peft_model: Any, directory: Path, base_name: str) -> Path:
    """Write ``peft_model``'s active LoRA to ``directory`` in PEFT's layout; return it.

    ``base_name`` becomes ``base_model_name_or_path``: the base model's name (the GGUF's
    ``general.name``; whoever serves the adapter from vLLM names the same model in Hugging
    Face format). Raises TrainingError when the result is not a clean PEFT folder (an
    absolute path left in its config, pickle weights); nothing is left at ``directory``
    then, and an earlier folder there is replaced only by a complete one.
    """
    directory = Path(directory)
    if not base_name or Path(base_name).expanduser().is_absolute():
        raise TrainingError(f"the PEFT adapter's base should be a model's name, not {base_name!r}")
    name = peft_model.active_adapter
    config = peft_model.peft_config[name]
    partial = directory.with_name(f".{directory.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    saved_base = config.base_model_name_or_path
    config.base_model_name_or_path = base_name
    try:
        peft_model.save_pretrained(
            str(partial),
            safe_serialization=True,
            selected_adapters=[name],
            save_embedding_layers=False,
        )
        # peft puts an adapter not named "default" in a sub-folder of that name.
        written = partial if name == "default" else partial / name
        for extra in sorted({p.name for p in written.iterdir()} - set(PEFT_FILES)):
            _remove(written / extra)
        peft_folder_files(written)  # the checks a checkpoint's pack and verify run
        if directory.exists():
            shutil.rmtree(directory)
        written.rename(directory)
    except (CheckpointError, ValueError) as error:
        raise TrainingError(f"the PEFT adapter is not usable: {error}") from None
    finally:
        config.base_model_name_or_path = saved_base
        shutil.rmtree(partial, ignore_errors=True)
    fsync_directory(directory.parent)
    logger.info("wrote the PEFT adapter (%s and its weights) to %s", CONFIG_NAME, directory)
    return directory


def _remove(path: Path) -> None:
    """A file or folder save_pretrained wrote beyond the layout (its README model card)."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
