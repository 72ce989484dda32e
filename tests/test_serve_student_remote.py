"""A team serves its student from its own server; Apprentice's remote backend asks for it by id.

The end-to-end test starts ``python -m llama_cpp.server`` on 127.0.0.1 with the embedded
Gemma 3 270M and a student checkpoint's adapter under an alias, as a team's recipe does,
and checks that the remote backend, naming the alias in its URL (``URL#model-id``), gets
what Apprentice's own llama.cpp worker answers with that checkpoint, and not what the base
answers. The fast tests use a stub that lists models as vLLM does (the base first, then
each ``--lora-modules`` adapter).
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from model.checkpoints.pack import pack_checkpoint
from model.factory import BackendSettings, create_backend
from model.runtime.api import Backend, CompletionRequest, Prompt, SpecialToken
from model.runtime.fim import STUDENT_FAMILY, TRAINED_TEMPLATES
from model.runtime.gguf import read_gguf
from model.runtime.llama_backend import LlamaConfig, LlamaCppBackend
from model.runtime.remote import RemoteBackend
from tests.llama_server import running_server
from tests.lora_gguf import write_lora

ALIAS = "apprentice-student"
BASE_ID = "google/gemma-3-270m"
SERVER_START_S = 120
# Greedy, as a suggestion is asked; llama.cpp's worker samples with no repeat penalty, so
# the remote backend asks the server for none either (llama_cpp.server's default is 1.1).
SAME_AS_WORKER = 1.0
PROMPTS: tuple[Prompt, ...] = (
    ("import os\n\n\ndef read_config(path):\n    ",),
    ("class Stack:\n    def __init__(self):\n        ",),
    # The student's FIM layout: suffix first, then the prefix, the middle continues it.
    (
        SpecialToken("<unused1>"),
        "\n    return total\n",
        SpecialToken("<unused0>"),
        "def add(values):\n    total = ",
    ),
)


# -- the model id, against a stub that lists models as vLLM does ------------------------------


class _VllmLike(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: _VllmLike

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.seen.append(("GET", None))
        models = [{"id": BASE_ID}, {"id": ALIAS, "parent": BASE_ID}]
        self._reply("application/json", json.dumps({"data": models}).encode())

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append(("POST", body))
        chunk = {"model": body["model"], "choices": [{"text": "x", "finish_reason": "stop"}]}
        self._reply("text/event-stream", b"data: " + json.dumps(chunk).encode() + b"\n\n")

    def _reply(self, content_type: str, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def vllm_like() -> Iterator[_VllmLike]:
    server = _VllmLike()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _ask(backend: RemoteBackend) -> str:
    stream = backend.complete(CompletionRequest(prompt=("x = ",), max_tokens=4))
    assert stream.text() == "x"
    return stream.usage.model


def test_the_url_fragment_names_the_adapter_the_server_serves(vllm_like: _VllmLike) -> None:
    assert _ask(RemoteBackend(f"{vllm_like.url}#{ALIAS}")) == ALIAS
    assert vllm_like.seen[-1][1]["model"] == ALIAS
    assert [method for method, _ in vllm_like.seen] == ["POST"]  # no list needed
    # model.remoteModel, when set, wins over the URL's id.
    assert _ask(RemoteBackend(f"{vllm_like.url}#{ALIAS}", model=BASE_ID)) == BASE_ID


def test_without_an_id_the_first_listed_model_the_base_is_asked(vllm_like: _VllmLike) -> None:
    assert _ask(RemoteBackend(vllm_like.url)) == BASE_ID


def test_the_repeat_penalty_is_sent_only_when_set(vllm_like: _VllmLike) -> None:
    _ask(RemoteBackend(vllm_like.url, model=ALIAS))
    assert "repeat_penalty" not in vllm_like.seen[-1][1]
    _ask(RemoteBackend(vllm_like.url, model=ALIAS, repeat_penalty=SAME_AS_WORKER))
    assert vllm_like.seen[-1][1]["repeat_penalty"] == SAME_AS_WORKER


# -- the student served by llama_cpp.server ---------------------------------------------------


@pytest.fixture(scope="module")
def student_checkpoint(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the embedded base (left out, as a trained student's is installed) and
    an adapter on a third of its blocks, strong enough to change greedy output."""
    work = tmp_path_factory.mktemp("student")
    blocks = range(0, 18, 3)
    targets = [f"blk.{i}.{t}.weight" for i in blocks for t in ("attn_q", "ffn_down")]
    adapter = write_lora(
        work / "adapter.gguf", read_gguf(gemma_path), targets, magnitude=0.05, seed=1
    )
    packed = pack_checkpoint(
        work / "checkpoint",
        gemma_path,
        name=ALIAS,
        version="1.0.0",
        adapters=[(adapter, 1.0)],
        fim=STUDENT_FAMILY,
        fim_stop_tokens=TRAINED_TEMPLATES[STUDENT_FAMILY].stop_tokens,
    )
    (packed.directory / gemma_path.name).unlink()  # it loads from the embedded copy
    return packed.directory


@pytest.fixture(scope="module")
def student_server(
    served_model: Sequence[str], student_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``llama_cpp.server`` with the base and the checkpoint's adapter under ``ALIAS``."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    command = [
        *served_model, "--lora_path", str(student_checkpoint / "adapter.gguf"),
        "--model_alias", ALIAS, "--n_ctx", "512", "--n_threads", "1",
    ]  # fmt: skip
    with running_server(command, log, SERVER_START_S) as url:
        yield url


def _answers(backend: Backend) -> list[str]:
    try:
        return [
            backend.complete(CompletionRequest(prompt=p, max_tokens=24, temperature=0.0)).text()
            for p in PROMPTS
        ]
    finally:
        backend.close()


def test_the_served_student_answers_as_the_checkpoint_does_locally(
    student_server: str, student_checkpoint: Path, gemma_path: Path
) -> None:
    with urllib.request.urlopen(f"{student_server}/models", timeout=5) as resp:
        assert [m["id"] for m in json.load(resp)["data"]] == [ALIAS]
    remote = RemoteBackend(f"{student_server}#{ALIAS}", repeat_penalty=SAME_AS_WORKER)
    stream = remote.complete(CompletionRequest(prompt=PROMPTS[0], max_tokens=4))
    stream.text()
    assert stream.usage.model == ALIAS  # the server answered for the id that was asked

    served = _answers(remote)
    local = _answers(
        create_backend(
            BackendSettings(
                model_path=str(student_checkpoint), n_ctx=512, n_threads=1, snapshot_mb=0
            )
        )
    )
    base = _answers(
        LlamaCppBackend(LlamaConfig(model_path=gemma_path, n_ctx=512, n_threads=1, snapshot_mb=0))
    )
    assert all(served), served
    assert served == local
    assert all(s != b for s, b in zip(served, base, strict=True)), (served, base)
