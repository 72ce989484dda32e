"""The ``apprentice`` command line, run as a user runs it: a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "sample_repo"
CONFIG = SAMPLE / "shop" / "config.py"


def apprentice(
    *args: str, timeout: float = 180, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "lsp.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def end_of(path: Path) -> tuple[str, str]:
    lines = path.read_text().rstrip("\n").split("\n")
    return str(len(lines) - 1), str(len(lines[-1]))


def assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_complete_suggests_json_load_in_load_config(gemma_path: Path) -> None:
    line, col = end_of(CONFIG)
    result = apprentice("complete", str(CONFIG), "--line", line, "--col", col, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= {"text", "model", "latency_ms", "prompt_tokens", "completion_tokens"}
    assert "json.load" in data["text"], data
    assert data["prompt_tokens"] > 0 and data["completion_tokens"] > 0


def test_complete_works_with_the_network_cut(gemma_path: Path) -> None:
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-n", "true"], capture_output=True).returncode:
        pytest.skip("unshare -n is unavailable here (needs root or user namespaces)")
    line, col = end_of(CONFIG)
    result = apprentice(
        "complete", str(CONFIG), "--line", line, "--col", col, prefix=(unshare, "-n")
    )
    assert result.returncode == 0, result.stderr
    assert "json.load" in result.stdout


def test_missing_model_file() -> None:
    result = apprentice(
        "complete", str(CONFIG), "--line", "0", "--col", "0", "--model", "/nonexistent/m.gguf"
    )
    assert_one_line_error(result, "/nonexistent/m.gguf")


def test_non_gguf_model_file(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_text("<html>not a model</html>")
    result = apprentice("complete", str(CONFIG), "--line", "0", "--col", "0", "--model", str(fake))
    assert_one_line_error(result, "model.gguf")


def test_truncated_model_file(tmp_path: Path, gemma_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with gemma_path.open("rb") as source, cut.open("wb") as target:
        target.write(source.read(gemma_path.stat().st_size // 2))
    result = apprentice("complete", str(CONFIG), "--line", "0", "--col", "0", "--model", str(cut))
    assert_one_line_error(result, "truncated")


def test_model_verify_refuses_a_wrong_sha256(gemma_path: Path) -> None:
    result = apprentice("model", "verify", str(gemma_path), "--sha256", "0" * 64)
    assert_one_line_error(result, "sha256 mismatch")


def test_model_info_json(gemma_path: Path) -> None:
    result = apprentice("model", "info", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["architecture"] == "gemma3"
    assert data["quantization"] == "Q4_K_M"
    assert data["fim"] is False
    assert data["context_length"] > 0


def test_model_info_names_the_shipped_student_and_the_base(gemma_path: Path) -> None:
    student = apprentice("model", "info", "student", "--json")
    assert student.returncode == 0, student.stderr
    data = json.loads(student.stdout)
    assert data["verified"] is True and data["fim"] == "apprentice-gemma3"
    assert data["base"]["architecture"] == "gemma3"  # the embedded model, left out of the dir
    base = apprentice("model", "info", "base", "--json")
    assert base.returncode == 0, base.stderr
    assert json.loads(base.stdout)["fim"] is False


def test_a_reader_that_goes_away_is_not_an_internal_error(gemma_path: Path) -> None:
    """`apprentice model info | head -1`: the pipe closes before the output is written."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lsp.cli", "model", "info", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # before the command has imported anything, let alone printed
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "internal error" not in err, err


def test_position_outside_the_file() -> None:
    result = apprentice("complete", str(CONFIG), "--line", "400", "--col", "0")
    assert_one_line_error(result, "past the end of the file")
    result = apprentice("complete", str(CONFIG), "--line", "0", "--col", "500")
    assert_one_line_error(result, "past the end of line 0")


def test_binary_and_non_utf8_files(tmp_path: Path) -> None:
    binary = tmp_path / "a.py"
    binary.write_bytes(b"\x00\x01\x02binary")
    latin = tmp_path / "b.py"
    latin.write_bytes("x = 'café'\n".encode("latin-1"))
    assert_one_line_error(
        apprentice("complete", str(binary), "--line", "0", "--col", "0"), "binary"
    )
    assert_one_line_error(apprentice("complete", str(latin), "--line", "0", "--col", "0"), "UTF-8")


def test_dead_remote_server() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = apprentice(
        "complete", str(CONFIG), "--line", "0", "--col", "0", "--remote", f"http://127.0.0.1:{port}"
    )
    assert_one_line_error(result, f"127.0.0.1:{port}")


def test_complete_grounds_the_prompt_in_an_existing_index(tmp_path: Path, gemma_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(SAMPLE, repo)
    subprocess.run(["git", "-C", str(repo), "init", "-q"], check=True)
    checkout = repo / "shop" / "checkout.py"
    checkout.write_text(
        "from shop.cart import Cart\n\n\ndef checkout_total(cart: Cart) -> float:\n    return cart."
    )
    index_dir = str(tmp_path / "index")
    built = apprentice("index", str(repo), "--index-dir", index_dir, "--embedder", "fake")
    assert built.returncode == 0, built.stderr
    result = apprentice(
        "complete", str(checkout), "--line", "4", "--col", "16", "--json", "--index-dir", index_dir
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert "shop/cart.py" in data["context"]  # the definition of Cart reached the prompt
    assert "rebuilt" not in result.stderr  # a reader never rebuilds the index
    assert data["verdict"] in {"accept", "repair", "reject"}
