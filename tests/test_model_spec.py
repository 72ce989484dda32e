"""The one model-spec grammar: every form in every place, the one resolver, the one description.

The table below is the grammar: each form, what it parses to, and the places that take it.
Everywhere else it must be refused with one line that names the place and what it takes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

import model.checkpoints.checkpoint as checkpoint
import model.checkpoints.verification as verification
from model.checkpoints.checkpoint import describe_model, resolve_model
from model.checkpoints.pack import pack_checkpoint
from model.checkpoints.spec import (
    EVALUATION,
    INFO,
    SERVING,
    TEACHER,
    TRAINING_BASE,
    Context,
    ModelSpec,
    ModelSpecError,
    parse_model_spec,
)
from model.runtime.api import ModelError, ModelNotFoundError
from model.runtime.gguf import read_gguf
from tests.gguf_writer import tiny_model
from tests.lora_gguf import write_lora

CONTEXTS = {
    "serving": SERVING,
    "eval": EVALUATION,
    "teacher": TEACHER,
    "base": TRAINING_BASE,
    "info": INFO,
}
ALL = frozenset(CONTEXTS)
LOCAL = ALL  # a model on this machine: every place takes it
NO_ADAPTER = ALL  # every place takes MODEL+ADAPTER (training continues the adapter)

# (spec as written, the fields it parses to, the places that take it). Written relative to
# a working directory holding model.gguf, lora.gguf and the checkpoint directory ckpt/.
GRAMMAR: list[tuple[str, dict[str, Any], frozenset[str]]] = [
    ("model.gguf", {"kind": "gguf", "path": Path("model.gguf")}, LOCAL),
    ("absent.gguf", {"kind": "gguf", "path": Path("absent.gguf")}, LOCAL),  # found later
    ("sub/absent", {"kind": "gguf", "path": Path("sub/absent")}, LOCAL),
    ("ckpt", {"kind": "checkpoint", "path": Path("ckpt")}, LOCAL),
    ("acme", {"kind": "installed", "name": "acme", "version": None}, LOCAL),
    ("acme@1.2.0", {"kind": "installed", "name": "acme", "version": "1.2.0"}, LOCAL),
    ("base", {"kind": "base"}, LOCAL),
    ("student", {"kind": "student"}, LOCAL),
    ("default", {"kind": "default"}, LOCAL),
    ("", {"kind": "default"}, LOCAL),
    ("  Base ", {"kind": "base", "text": "Base"}, LOCAL),
    ("model.gguf+lora.gguf", {"kind": "gguf", "adapter": "lora.gguf"}, NO_ADAPTER),
    ("student+lora.gguf", {"kind": "student", "adapter": "lora.gguf"}, NO_ADAPTER),
    ("default+lora.gguf", {"kind": "default", "adapter": "lora.gguf"}, NO_ADAPTER),
    ("ckpt+lora.gguf", {"kind": "checkpoint", "adapter": "lora.gguf"}, NO_ADAPTER),
    (
        "http://127.0.0.1:8080/v1#big",
        {"kind": "remote", "url": "http://127.0.0.1:8080/v1", "remote_model": "big"},
        frozenset({"eval", "teacher"}),
    ),
    (
        "https://models.example",
        {"kind": "remote", "url": "https://models.example", "remote_model": None},
        frozenset({"eval", "teacher"}),
    ),
    ("none", {"kind": "none"}, frozenset({"teacher"})),
    ("NONE", {"kind": "none"}, frozenset({"teacher"})),
    ("self", {"kind": "self"}, frozenset({"teacher"})),
]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "model.gguf").write_bytes(b"")
    (tmp_path / "lora.gguf").write_bytes(b"")
    (tmp_path / "ckpt").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("place", sorted(CONTEXTS))
@pytest.mark.parametrize(("text", "fields", "places"), GRAMMAR, ids=[g[0] or "''" for g in GRAMMAR])
def test_every_form_in_every_place(
    workdir: Path, text: str, fields: dict[str, Any], places: frozenset[str], place: str
) -> None:
    context = CONTEXTS[place]
    if place in places:
        spec = parse_model_spec(text, allow=context)
        assert {key: getattr(spec, key) for key in fields} == fields
        assert spec.local == (spec.kind not in ("remote", "none"))
        return
    with pytest.raises(ModelSpecError) as refused:
        parse_model_spec(text, allow=context)
    message = str(refused.value)
    assert "\n" not in message and context.where in message and "not accepted by" in message
    if "+" in text and place == "base":
        assert message.endswith(
            "continuing a tuned checkpoint is not supported yet; "
            "--base base trains from the embedded model"
        )
    else:
        assert message.endswith(f"{context.where} takes {context.accepted()}")
    if text.startswith("http") and place == "serving":
        assert "model.remoteUrl (--remote on the command line)" in message


def test_what_each_place_says_it_takes() -> None:
    assert SERVING.accepted() == (
        "a GGUF file, MODEL+ADAPTER.gguf, a checkpoint directory, an installed NAME[@VERSION], "
        "base, student or default (or nothing)"
    )
    assert TRAINING_BASE.accepted() == SERVING.accepted()
    assert TEACHER.accepted().endswith(
        "default (or nothing), http(s)://host[:port][/v1][#model-id], none or self"
    )
    assert "http" in EVALUATION.accepted() and "none" not in EVALUATION.accepted()
    assert INFO.accepted() == SERVING.accepted()


@pytest.mark.parametrize(
    ("text", "context", "error", "words"),
    [
        ("http://:8080/v1", EVALUATION, ModelSpecError, "not a server URL of the form"),
        ("http://host:99999", TEACHER, ModelSpecError, "not a server URL of the form"),
        ("+lora.gguf", SERVING, ModelSpecError, "an adapter needs a model to go on"),
        ("none+lora.gguf", TEACHER, ModelSpecError, "an adapter on 'none' (no model)"),
        ("acme@", SERVING, ModelNotFoundError, "not NAME or NAME@VERSION"),
    ],
)
def test_malformed_specs_are_one_line(
    workdir: Path, text: str, context: Context, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")) as caught:
        parse_model_spec(text, allow=context)
    assert "\n" not in str(caught.value)


def test_a_url_never_shows_its_password(workdir: Path) -> None:
    spec = parse_model_spec("https://me:secret@host:8443/v1#m", allow=TEACHER)
    assert spec.url == "https://me:secret@host:8443/v1"  # the backend still gets it
    assert spec.shown == "https://host:8443/v1#m"
    with pytest.raises(ModelSpecError) as refused:
        parse_model_spec("https://me:secret@host/v1", allow=TRAINING_BASE)
    assert "secret" not in str(refused.value)


def test_a_file_whose_name_has_a_plus_is_a_file(workdir: Path) -> None:
    (workdir / "c++.gguf").write_bytes(b"")
    spec = parse_model_spec("c++.gguf")
    assert (spec.kind, spec.adapter) == ("gguf", None)


def test_spec_errors_are_model_errors_and_value_errors() -> None:
    """The server reports a ModelError; the CLI prints either as one line (exit status 1)."""
    assert issubclass(ModelSpecError, ModelError) and issubclass(ModelSpecError, ValueError)


# -- the one resolver --------------------------------------------------------------------------


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tiny_model().write(tmp_path / "base.gguf")


@pytest.fixture
def adapter(tmp_path: Path, base: Path) -> Path:
    return write_lora(tmp_path / "team.lora.gguf", read_gguf(base), ["blk.0.attn_q.weight"])


@pytest.fixture
def shipped(tmp_path: Path, base: Path, adapter: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A student checkpoint as the shipped one, on an embedded model that is ``base``."""
    student = pack_checkpoint(
        tmp_path / "student", base, name="s", version="1", adapters=[(adapter, 1.0)]
    ).directory
    monkeypatch.setattr(checkpoint, "SHIPPED_STUDENT", student)
    monkeypatch.setattr(verification, "ensure_default_model", lambda: base)
    monkeypatch.setattr(checkpoint, "DEFAULT_IS_STUDENT", False)
    return student


def test_the_resolver_takes_a_parsed_spec_or_text(shipped: Path, base: Path, adapter: Path) -> None:
    by_text = resolve_model(f"{base}+{adapter}")
    by_spec = resolve_model(parse_model_spec(f"{base}+{adapter}"))
    assert by_text.gguf == by_spec.gguf == base
    assert [a.path for a in by_text.loras] == [adapter] == [a.path for a in by_spec.loras]
    student = resolve_model("student")
    assert student.directory == shipped and len(student.loras) == 1
    on_student = resolve_model(f"student+{adapter}")
    assert len(on_student.loras) == 2  # the checkpoint's adapter, then the loose one
    assert resolve_model("self", allow=TEACHER).source == "embedded"
    with pytest.raises(ModelSpecError, match=r"not accepted by model\.path"):
        resolve_model("http://127.0.0.1:9/v1")
    with pytest.raises(ModelSpecError, match="names no model on this machine"):
        resolve_model(ModelSpec("remote", text="http://h", url="http://h"))


def test_one_description_of_a_resolved_model(shipped: Path, base: Path, adapter: Path) -> None:
    keys = set(describe_model(resolve_model("student")))
    embedded = describe_model(resolve_model("base"))
    assert set(embedded) == keys and embedded["source"] == "embedded"
    assert embedded["verified"] is True and embedded["fim"] == "auto"
    loose = describe_model(resolve_model(f"{base}+{adapter}"), header=True)
    assert set(loose) == keys | {"base"} and loose["verified"] is False
    assert loose["adapters"] == [{"file": str(adapter), "scale": 1.0}]
    assert loose["base"]["architecture"] == "llama"  # type: ignore[index]


# -- train --base, distill --teacher, model info -----------------------------------------------


def test_train_base_takes_a_tuned_model_to_continue(shipped: Path) -> None:
    from model.training.train.base import describe_base

    student = resolve_model(parse_model_spec("student", allow=TRAINING_BASE), allow=TRAINING_BASE)
    assert student.directory == shipped and len(student.loras) == 1
    loose = parse_model_spec(f"base+{shipped / 'team.lora.gguf'}", allow=TRAINING_BASE)
    assert loose.adapter == str(shipped / "team.lora.gguf")
    with pytest.raises(ModelSpecError, match="not accepted by --base"):
        describe_base("http://127.0.0.1:8080/v1")
    # Continuing itself (the adapter read back into the new LoRA): tests/test_train_continue.py


def test_train_base_takes_the_embedded_model_without_hashing_it_again(
    gemma_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import model.training.train.base as training_base
    from model.runtime.default_model import embedded_sha256

    monkeypatch.setattr(checkpoint, "DEFAULT_IS_STUDENT", False)

    def no_hash(path: Path) -> str:
        raise AssertionError(f"{path} hashed again")

    monkeypatch.setattr(training_base, "sha256_file", no_hash)
    for spec in ("base", None, "default"):
        described = training_base.describe_base(spec)
        assert described.path == gemma_path and described.architecture == "gemma3"
        assert described.sha256 == embedded_sha256()


def teacher_args(teacher: str) -> argparse.Namespace:
    return argparse.Namespace(
        teacher=teacher,
        remote_model=None,
        k=1,
        temperature=0.0,
        teacher_timeout=5.0,
        retries=0,
        rate=0.0,
        fim_template=None,
    )


def test_teacher_student_is_the_shipped_student(
    shipped: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import model.factory
    from lsp.cli.train import _teacher
    from model.runtime.fake import FakeBackend

    made: list[Any] = []

    def factory(settings: Any) -> FakeBackend:
        made.append(settings)
        return FakeBackend()

    monkeypatch.setattr(model.factory, "create_backend", factory)
    teacher = _teacher(teacher_args("student"))
    assert teacher.name == "student"
    [settings] = made
    assert settings.resolved.directory == shipped and len(settings.resolved.loras) == 1
    made.clear()
    assert _teacher(teacher_args("self")).name == "self"
    assert made[0].resolved.source == "embedded"
    assert _teacher(teacher_args("none")) is None
    remote = _teacher(teacher_args("http://u:pw@127.0.0.1:9/v1#big"))
    assert remote.name == "http://127.0.0.1:9/v1#big"
    with pytest.raises(ModelSpecError, match="not a server URL"):
        _teacher(teacher_args("http://"))
    with pytest.raises(ModelSpecError, match="not accepted by --teacher"):
        _teacher(teacher_args("none+lora.gguf"))


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from lsp.cli import main

    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_model_info_student_is_the_one_description(
    gemma_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run_cli(capsys, "model", "info", "student", "--json")
    assert status == 0, err
    data = json.loads(out)
    resolved = resolve_model("student")
    assert data == describe_model(resolved, header=True)
    assert data["source"] == "checkpoint" and data["verified"] is True
    assert data["fim"] == "apprentice-gemma3"
    assert data["adapters"] == [{"file": "adapter.gguf", "scale": 1.0}]
    assert data["base"]["architecture"] == "gemma3"  # the embedded model, left out of the dir


def test_model_info_refuses_what_names_no_local_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for spec in ("none", "http://127.0.0.1:9/v1"):
        status, _, err = run_cli(capsys, "model", "info", spec)
        assert status == 1 and "not accepted by model info" in err
        assert err.count("\n") == 1
