"""Nothing in a repository decides which model, executable, remote URL or index location the
server uses: settings come from the editor client (which applies workspace trust) only.

A cloned repository brings settings files of every kind; each names a model, a remote URL, an
API key or an index location here, and each must be ignored. Executables (the model worker,
ruff, git, the ONNX export) never come from the workspace either, even when the server runs
with the workspace as its working directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from indexer.walk import walk_repository
from lint_bridge.ruff import find_ruff
from model.runtime.api import ModelError
from model.runtime.llama_backend import LlamaConfig, LlamaCppBackend
from tests.e2e.test_protocol import RawClient, alive

EVIL_MODEL = "/tmp/apprentice-evil/model.gguf"
EVIL_URL = "http://203.0.113.5:8080/v1"


def plant_settings(root: Path, evil_index: Path) -> None:
    """Settings files a repository might carry, each naming a hostile choice."""
    settings = {
        "model": {"path": EVIL_MODEL, "remoteUrl": EVIL_URL, "lora": EVIL_MODEL},
        "index": {"location": str(evil_index)},
        "logLevel": "debug",
    }
    flat = {
        "apprentice.model.path": EVIL_MODEL,
        "apprentice.model.remoteUrl": EVIL_URL,
        "apprentice.index.location": str(evil_index),
    }
    (root / ".vscode").mkdir()
    (root / ".vscode" / "settings.json").write_text(json.dumps(flat))
    (root / ".apprentice.json").write_text(json.dumps(settings))
    (root / "apprentice.json").write_text(json.dumps(settings))
    toml = (
        f'[model]\npath = "{EVIL_MODEL}"\nremoteUrl = "{EVIL_URL}"\n'
        f'[index]\nlocation = "{evil_index}"\n'
    )
    (root / ".apprentice.toml").write_text(toml)
    (root / "apprentice.toml").write_text(toml)
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "victim"\n[tool.apprentice.model]\npath = "{EVIL_MODEL}"\n'
        f'remoteUrl = "{EVIL_URL}"\n[tool.apprentice.index]\nlocation = "{evil_index}"\n'
    )
    (root / ".env").write_text(
        f"APPRENTICE_API_KEY=sk-planted\nAPPRENTICE_MODEL={EVIL_MODEL}\n"
        f"APPRENTICE_REMOTE_URL={EVIL_URL}\nXDG_CACHE_HOME={evil_index}\n"
    )
    (root / ".nvim.lua").write_text(
        f"require('apprentice').setup({{ settings = {{ model = {{ path = '{EVIL_MODEL}' }} }} }})\n"
    )
    (root / ".editorconfig").write_text("root = true\n")


async def test_repository_settings_files_are_ignored(tmp_path: Path, lsp_server: object) -> None:
    root = tmp_path / "workspace"
    root.mkdir()
    (root / "app.py").write_text("import json\n\n\ndef load(path):\n    return 1\n")
    evil_index = tmp_path / "evil-index"
    plant_settings(root, evil_index)
    index_dir = tmp_path / "index"
    client = await RawClient.start(tmp_path / "server.log")
    try:
        answer = await client.call(
            "init",
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": root.as_uri(),
                "capabilities": {},
                "initializationOptions": {
                    "index": {"location": str(index_dir), "embeddings": False}
                },
            },
        )
        assert "capabilities" in answer["result"]
        await client.notify("initialized", {})
        status = await alive(client, "status")
        settings = status["settings"]
        assert settings["model"]["path"] is None
        assert settings["model"]["remoteUrl"] is None
        assert settings["model"]["lora"] is None
        assert settings["index"]["location"] == str(index_dir)
        assert settings["logLevel"] == "info"
        assert "remote" not in str(status["backend"])
        assert EVIL_MODEL not in str(status["backend"])
        # The index goes where the client said, once it is built.
        for _ in range(1200):
            if list(index_dir.glob("*/index.sqlite")):
                break
            await asyncio.sleep(0.1)
        assert list(index_dir.glob("*/index.sqlite")), "no index where the client said"
        assert not evil_index.exists()
    finally:
        await client.close()


def test_the_model_worker_never_imports_code_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.gguf_writer import tiny_model

    workspace = tmp_path / "workspace"
    (workspace / "model").mkdir(parents=True)
    marker = tmp_path / "workspace-code-ran"
    plant = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    (workspace / "model" / "__init__.py").write_text(plant)
    (workspace / "model" / "worker.py").write_text(plant)
    bogus = tiny_model(architecture="no-such-arch").write(tmp_path / "bogus.gguf")
    monkeypatch.chdir(workspace)  # editors start servers in the workspace folder
    backend = LlamaCppBackend(LlamaConfig(model_path=bogus))
    with pytest.raises(ModelError):
        backend.info()
    backend.close()
    assert not marker.exists(), marker.read_text()


def test_the_onnx_export_never_imports_code_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from indexer import embed

    workspace = tmp_path / "workspace"
    (workspace / "indexer").mkdir(parents=True)
    marker = tmp_path / "workspace-code-ran"
    plant = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\nraise SystemExit(3)\n"
    (workspace / "indexer" / "__init__.py").write_text(plant)
    (workspace / "indexer" / "onnx_export.py").write_text(plant)
    monkeypatch.chdir(workspace)
    with pytest.raises(embed.EmbedderError):
        # A source that is not a model: the real export fails on it, after importing.
        embed._run_export(tmp_path / "no-model", tmp_path / "out", embed.OnnxRecipe())
    assert not marker.exists(), marker.read_text()


def plant_executable(folder: Path, name: str, marker: Path) -> None:
    script = folder / name
    script.write_text(f"#!/bin/sh\necho {name} >> {marker}\nexit 1\n")
    script.chmod(0o755)


def test_git_and_ruff_never_come_from_a_relative_path_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "app.py").write_text("x = 1\n")
    subprocess.run(["git", "init", "-q", str(workspace)], check=True)
    marker = tmp_path / "planted-ran"
    for name in ("git", "ruff"):
        plant_executable(workspace, name, marker)
    monkeypatch.chdir(workspace)
    # "." and "" in PATH name the current directory: the repository.
    real_git = shutil.which("git")
    assert real_git is not None
    monkeypatch.setenv("PATH", os.pathsep.join([".", "", os.path.dirname(real_git)]))
    walked = walk_repository(workspace)
    assert walked.is_git
    ruff = find_ruff()
    assert ruff is None or Path(ruff).is_absolute()
    assert not marker.exists(), marker.read_text()
