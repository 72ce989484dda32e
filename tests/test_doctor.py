"""``apprentice doctor`` (lsp/cli/doctor.py): one line a check, exit 0 only when all needed work."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from lsp.cli import doctor, main
from lsp.core.user_settings import ENV_VAR
from tests.gguf_writer import tiny_model
from tests.openai_stub import CompletionStub

SYSTEM_INFO = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
    "AVX512 = 1 | AVX512_VNNI = 0 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
)


def test_built_features_and_what_the_cpu_lacks() -> None:
    built = doctor.built_features(SYSTEM_INFO)
    assert {"AVX2", "AVX512", "LLAMAFILE"} <= built and "AVX512_VNNI" not in built
    flags = {"pni", "ssse3", "avx", "avx2", "f16c", "fma", "bmi2"}
    assert doctor.missing_features(SYSTEM_INFO, flags) == ["AVX512"]
    assert doctor.missing_features(SYSTEM_INFO, flags | {"avx512f"}) == []


def test_this_machine_has_the_features_of_its_own_build() -> None:
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    flags = doctor.cpu_flags()
    assert flags is not None
    assert doctor.missing_features(info, flags) == []


@pytest.fixture
def stub() -> Iterator[CompletionStub]:
    import threading

    server = CompletionStub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _doctor(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    settings: object,
    *flags: str,
) -> tuple[int, dict[str, dict[str, object]]]:
    path = tmp_path / "settings.json"
    path.write_text(settings if isinstance(settings, str) else json.dumps(settings))
    monkeypatch.setenv(ENV_VAR, str(path))
    status = main(["doctor", "--json", *flags])
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is (status == 0)
    return status, {check["name"]: check for check in report["checks"]}


def _remote(url: str, index: Path) -> dict[str, object]:
    """Settings that need no local model and no embedder (the fast tier loads neither)."""
    return {
        "model": {"remoteUrl": url},
        "index": {"embeddings": False, "location": str(index)},
    }


def test_a_remote_setup_that_works(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stub: CompletionStub,
) -> None:
    status, checks = _doctor(
        tmp_path, monkeypatch, capsys, _remote(stub.url + "/v1", tmp_path / "index")
    )
    assert status == 0, checks
    assert checks["remote server"]["status"] == "ok"
    for name in ("model", "checkpoint", "embedder"):
        assert checks[name]["status"] == "skip" and checks[name]["needed"] is False
    for name in ("settings", "python", "ruff", "git", "index location"):
        assert checks[name]["status"] == "ok", checks[name]
    assert (tmp_path / "index").is_dir()


def test_a_remote_server_that_does_not_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = _remote(f"http://127.0.0.1:{port}/v1", tmp_path / "index")
    status, checks = _doctor(tmp_path, monkeypatch, capsys, settings)
    assert status == 1
    remote = checks["remote server"]
    assert remote["status"] == "fail" and "start the server" in str(remote["fix"])


def test_text_report_is_one_line_a_check(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stub: CompletionStub,
) -> None:
    index = tmp_path / "not-a-folder"
    index.write_text("a file where the index should go")
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(_remote(stub.url, index)))
    monkeypatch.setenv(ENV_VAR, str(settings))
    assert main(["doctor"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(doctor.run_checks()) + 1
    failed = [line for line in lines if line.startswith("FAIL")]
    assert (
        len(failed) == 1
        and "index location" in failed[0]
        and "fix: set index.location" in (failed[0])
    )
    assert lines[-1] == "1 check(s) failed: apprentice will not work as configured"


def test_a_bad_settings_file_fails_its_check(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stub: CompletionStub,
) -> None:
    settings = _remote(stub.url, tmp_path / "index")
    settings["completion"] = {"candidates": "many"}
    status, checks = _doctor(tmp_path, monkeypatch, capsys, settings)
    assert status == 1
    assert checks["settings"]["status"] == "fail"
    assert "completion.candidates" in str(checks["settings"]["detail"])
    assert checks["remote server"]["status"] == "ok"  # the good keys still apply
    for name in ("_model_check", "_llama_check", "_embedder_check"):  # the defaults' models
        monkeypatch.setattr(doctor, name, lambda *args: doctor.Check("", doctor.OK, "-"))
    status, checks = _doctor(tmp_path, monkeypatch, capsys, "{broken", "--no-load")
    assert status == 1 and "is not JSON" in str(checks["settings"]["detail"])


def test_what_the_settings_do_not_use_is_not_tried(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stub: CompletionStub,
) -> None:
    monkeypatch.setattr("indexer.git_files.trusted_executable", lambda name: None)
    settings = _remote(stub.url, tmp_path / "index")
    settings["index"] = {"enabled": False}
    status, checks = _doctor(tmp_path, monkeypatch, capsys, settings)
    assert status == 0
    assert checks["git"]["status"] == "skip" and checks["git"]["needed"] is False
    assert checks["git"]["detail"] == "not used: index.enabled is off"
    settings["index"] = {"enabled": True, "embeddings": False, "location": str(tmp_path)}
    status, checks = _doctor(tmp_path, monkeypatch, capsys, settings)
    assert status == 1 and checks["git"]["status"] == "fail"


@pytest.fixture
def signed_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny checkpoint signed by a fresh key, and that key's public half."""
    base = tiny_model().write(tmp_path / "base.gguf")
    key = tmp_path / "team.key"
    assert main(["model", "keygen", str(key), "--comment", "Team"]) == 0
    folder = tmp_path / "team-ckpt"
    packed = main(
        [
            "model", "pack", str(folder), "--gguf", str(base), "--name", "team-coder",
            "--version", "1.0.0", "--fim", "none", "--sign", str(key), "--signer", "Team",
        ]
    )  # fmt: skip
    assert packed == 0
    return folder, Path(str(key) + ".pub")


def _no_embedded_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded model's check passes without reading it (the fast tier loads no model)."""
    monkeypatch.setattr(doctor, "_model_check", lambda settings: doctor.Check("", doctor.OK, "-"))


def test_a_signed_checkpoint_under_the_policy(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    signed_checkpoint: tuple[Path, Path],
) -> None:
    _no_embedded_model(monkeypatch)
    folder, public = signed_checkpoint
    capsys.readouterr()
    policy = {"path": str(folder), "requireSignature": True, "trustedKeys": [str(public)]}
    index = {"embeddings": False, "location": str(tmp_path / "index")}
    status, checks = _doctor(
        tmp_path, monkeypatch, capsys, {"model": policy, "index": index}, "--no-load"
    )
    assert status == 0, checks
    detail = str(checks["checkpoint"]["detail"])
    assert "team-coder@1.0.0 verified, signed by Team (trusted)" in detail
    assert "signatures required" in detail
    # Another key: refused, one line, with the fix.
    other = tmp_path / "other.key"
    assert main(["model", "keygen", str(other)]) == 0
    capsys.readouterr()
    policy["trustedKeys"] = [str(other) + ".pub"]
    status, checks = _doctor(
        tmp_path, monkeypatch, capsys, {"model": policy, "index": index}, "--no-load"
    )
    assert status == 1
    assert checks["checkpoint"]["status"] == "fail"
    assert "model.trustedKeys" in str(checks["checkpoint"]["fix"])


def test_a_bare_gguf_is_refused_when_signatures_are_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _no_embedded_model(monkeypatch)
    gguf = tiny_model().write(tmp_path / "bare.gguf")
    settings = {
        "model": {"path": str(gguf), "requireSignature": True},
        "index": {"enabled": False},
        "verify": {"ruff": False},
    }
    status, checks = _doctor(tmp_path, monkeypatch, capsys, settings, "--no-load")
    assert status == 1
    assert "a bare GGUF carries no signature" in str(checks["checkpoint"]["detail"])
    assert checks["ruff"]["needed"] is False


def test_the_whole_default_setup(
    gemma_path: Path,
    minilm_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No settings file: the embedded model verified and run in llama.cpp, the embedder."""
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "none.json"))
    assert main(["doctor", "--json"]) == 0
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert [name for name, c in checks.items() if c["status"] != "ok"] == [
        "checkpoint",
        "remote server",
    ]
    assert "a prompt evaluated" in checks["llama.cpp"]["detail"]
    assert "sha256" in checks["model"]["detail"]
