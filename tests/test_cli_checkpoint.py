"""``apprentice model pack|verify|keygen|install|list|remove|info`` and ``--model CHECKPOINT``,
run as a user runs them: subprocesses, one-line errors, exit status 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from model.runtime.default_model import sha256_file
from model.runtime.gguf import read_gguf
from tests.gguf_writer import tiny_model
from tests.lora_gguf import write_lora

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "tests" / "data" / "sample_repo" / "shop" / "config.py"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")),
        "HF_HUB_OFFLINE": "1",
    }


def run(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lsp.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
    )


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    base = tiny_model().write(tmp_path / "base.gguf")
    lora = write_lora(tmp_path / "team.gguf", read_gguf(base), ["blk.0.attn_q.weight"])
    return base, lora


def test_keygen_pack_sign_verify_info(
    tmp_path: Path, env: dict[str, str], files: tuple[Path, Path]
) -> None:
    base, lora = files
    key = tmp_path / "team.key"
    result = run(env, "model", "keygen", str(key), "--comment", "ACME ML")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("apprentice-ed25519 ")
    ckpt = tmp_path / "ckpt"
    packed = run(
        env, "model", "pack", str(ckpt), "--gguf", str(base), "--lora", f"{lora}:0.5",
        "--name", "acme", "--version", "1.0", "--sign", str(key), "--signer", "ACME ML",
        "--provenance", "dataset_card=card.md", "--json",
    )  # fmt: skip
    assert packed.returncode == 0, packed.stderr
    summary = json.loads(packed.stdout)
    assert summary["signed"] and summary["fim"] == "qwen2.5-coder" and len(summary["digest"]) == 64

    verified = run(env, "model", "verify", str(ckpt), "--trust", f"{key}.pub", "--json")
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert report["trusted"] and report["signer"] == "ACME ML"
    assert report["digest"] == summary["digest"]

    info = json.loads(run(env, "model", "info", str(ckpt), "--json").stdout)
    assert (info["name"], info["version"], info["verified"], info["signer"]) == (
        "acme", "1.0", True, "ACME ML",
    )  # fmt: skip
    assert info["base"]["architecture"] == "llama"
    assert info["adapters"] == [{"file": "team.gguf", "scale": 0.5}]


def test_pack_carries_the_peft_folder_and_info_names_it(
    tmp_path: Path, env: dict[str, str], files: tuple[Path, Path]
) -> None:
    from tests.test_peft_layout import fake_peft

    base, lora = files
    ckpt = tmp_path / "ckpt"
    packed = run(
        env, "model", "pack", str(ckpt), "--gguf", str(base), "--lora", str(lora),
        "--peft", str(fake_peft(tmp_path / "peft-out")), "--name", "acme", "--version", "1",
    )  # fmt: skip
    assert packed.returncode == 0, packed.stderr
    assert (ckpt / "peft" / "adapter_model.safetensors").is_file()
    info = json.loads(run(env, "model", "info", str(ckpt), "--json").stdout)
    assert info["verified"] and info["peft"] == "peft"
    plain = tmp_path / "plain"
    assert run(env, "model", "pack", str(plain), "--gguf", str(base), "--name", "a",
               "--version", "1").returncode == 0  # fmt: skip
    assert json.loads(run(env, "model", "info", str(plain), "--json").stdout)["peft"] is None


def test_verify_refusals_are_one_line(
    tmp_path: Path, env: dict[str, str], files: tuple[Path, Path]
) -> None:
    base, lora = files
    ckpt = tmp_path / "ckpt"
    args = ["model", "pack", str(ckpt), "--gguf", str(base), "--lora", str(lora), "--copy"]
    assert run(env, *args, "--name", "acme", "--version", "1").returncode == 0
    run(env, "model", "keygen", str(tmp_path / "k"))
    one_line_error(
        run(env, "model", "verify", str(ckpt), "--trust", str(tmp_path / "k.pub")),
        "apprentice-model.sig",
        "signature check failed",
        "not signed",
    )
    with (ckpt / "team.gguf").open("r+b") as f:
        f.truncate(64)
    one_line_error(
        run(env, "model", "verify", str(ckpt)), str(ckpt / "team.gguf"), "size check failed"
    )
    (ckpt / "apprentice-model.toml").write_text("schema = 2\n")
    one_line_error(run(env, "model", "verify", str(ckpt)), "schema check failed", "newer")
    one_line_error(run(env, "model", "verify", str(base)), "--sha256")
    one_line_error(
        run(env, "model", "pack", str(tmp_path / "x"), "--gguf", str(base), "--name", "a/b",
            "--version", "1"),
        "letters, digits",
    )  # fmt: skip


def test_verify_sha256_still_checks_a_bare_gguf(
    env: dict[str, str], files: tuple[Path, Path]
) -> None:
    base, _ = files
    good = run(env, "model", "verify", str(base), "--sha256", sha256_file(base))
    assert good.returncode == 0 and "sha256 ok" in good.stderr
    one_line_error(run(env, "model", "verify", str(base), "--sha256", "0" * 64), "sha256 mismatch")


def test_install_list_remove(tmp_path: Path, env: dict[str, str], files: tuple[Path, Path]) -> None:
    base, lora = files
    ckpt = tmp_path / "ckpt"
    args = ["model", "pack", str(ckpt), "--gguf", str(base), "--lora", str(lora)]
    assert run(env, *args, "--name", "acme", "--version", "1.0").returncode == 0
    installed = run(env, "model", "install", str(ckpt), "--json")
    assert installed.returncode == 0, installed.stderr
    path = Path(json.loads(installed.stdout)["path"])
    assert path == tmp_path / "data" / "apprentice" / "checkpoints" / "acme" / "1.0"
    listed = json.loads(run(env, "model", "list", "--json").stdout)["checkpoints"]
    assert [(c["name"], c["version"], c["ok"]) for c in listed] == [("acme", "1.0", True)]
    info = json.loads(run(env, "model", "info", "acme@1.0", "--json").stdout)
    assert info["verified"] and info["path"] == str(path)
    (path / "team.gguf").unlink()
    broken = run(env, "model", "list")
    assert broken.returncode == 0 and "BROKEN: team.gguf is missing" in broken.stdout
    assert run(env, "model", "remove", "acme@1.0").returncode == 0
    assert json.loads(run(env, "model", "list", "--json").stdout)["checkpoints"] == []
    one_line_error(run(env, "model", "remove", "acme"), "no installed checkpoint")


def test_complete_through_a_checkpoint_directory_and_an_installed_name(
    tmp_path: Path, env: dict[str, str], gemma_path: Path
) -> None:
    # A faint adapter (it barely moves the logits): the suggestion stays the base model's.
    lora = write_lora(tmp_path / "faint.gguf", read_gguf(gemma_path), magnitude=0.001)
    ckpt = tmp_path / "ckpt"
    packed = run(
        env, "model", "pack", str(ckpt), "--gguf", str(gemma_path), "--lora", f"{lora}:1.0",
        "--name", "acme", "--version", "1.0",
    )  # fmt: skip
    assert packed.returncode == 0, packed.stderr
    line = str(len(CONFIG.read_text().rstrip("\n").split("\n")) - 1)
    col = str(len(CONFIG.read_text().rstrip("\n").split("\n")[-1]))
    result = run(env, "complete", str(CONFIG), "--line", line, "--col", col, "--model", str(ckpt),
                 "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model"] == "acme@1.0" and "json.load" in data["text"], data

    assert run(env, "model", "install", str(ckpt)).returncode == 0
    by_name = run(env, "complete", str(CONFIG), "--line", line, "--col", col, "--model", "acme",
                  "--json")  # fmt: skip
    assert by_name.returncode == 0, by_name.stderr
    assert json.loads(by_name.stdout)["model"] == "acme@1.0"

    (ckpt / "faint.gguf").unlink()
    refused = run(env, "complete", str(CONFIG), "--line", line, "--col", col, "--model", str(ckpt))
    one_line_error(refused, str(ckpt / "faint.gguf"), "presence check failed")
