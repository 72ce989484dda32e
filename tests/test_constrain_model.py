"""Constrained names and token log-probabilities with the real Gemma, through the worker."""

from __future__ import annotations

import contextlib
import io
import re
import tokenize
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from lint_bridge.api import CheckSettings
from lint_bridge.verify import Verifier
from lsp.core.legal_names import legal_names
from lsp.core.pipeline import CompletionPipeline, Cursor, PipelineSettings
from lsp.core.qualified_names import qualified_names
from model.runtime.api import CompletionRequest, NameConstraint, QualifiedNames
from model.runtime.llama_backend import LlamaConfig, LlamaCppBackend

# Prompts after which Gemma, sampling, writes attributes the module does not have
# (``shutil.CopyFile``, ``string.strip``: checked below), and the issue's own ``os.``.
PROMPTS = ("import shutil\n\nx = shutil.", "import string\n\nx = string.", "import os\n\nos.")
SEEDS = range(1, 7)
# Greedy outputs of the code before constrained decoding and log-probabilities existed
# (commit aa58efb, this machine's CPU, llama-cpp-python 0.3.36, 2 threads, n_ctx 2048,
# 24 tokens, a fresh worker given these prompts in this order: llama.cpp's numbers depend
# on how a prompt was split into batches, so on what the cache held): with the lever off,
# generation must not change by a byte.
BEFORE = {
    "import os\n\nos.": 'environ["CUDA_DEVICE_ORDER"] = "nouuid"\nos.environ["CUDA_VISIBLE_DEVICES',
    "import os\n\nprint(os.": "path.abspath(os.path.abspath(os.path.abspath(os.path.abspath(os.",
    "import json\n\n\ndef load(path):\n    with open(path) as f:\n        return json.": (
        "load(f)\n\n\ndef save(path):\n    with open(path) as f:\n        return json"
    ),
    "from os import": (
        " path\nfrom PIL import Image\nimport os\nimport sys\nimport numpy as np\nimport cv2"
        "\nimport random"
    ),
    "def add(a, b):\n    return": " a + b\n\ndef sub(a, b):\n    return a - b\n\ndef multiply(a, b",
    # Recorded at commit 8941523 (before constrained attributes), the same way, after the
    # prompts above: the first writes a qualifier mid-generation.
    "import shutil\n\n\ndef clean(folder):\n    ": (
        'shutil.move(folder, "C:/Users/user/Desktop/test.txt")\n\n\ndef clean_'
    ),
    "import string\n\n\ndef clean(text):\n    return ": "\n    " * 12,
    "import os\n\n\ndef config_dir():\n    return ": (
        '\n    \ndef main():\n    config_dir()\n    \n    \nif __name__ == "__main'
    ),
}
# Prompts after which Gemma, sampling at 1.0, writes the qualifier itself and then an
# attribute the module lacks (``shutil.copy_to`` with seed 5, ``string.replace`` with seed
# 7: checked below).
WRITING = (
    "import shutil\n\n\ndef clean(folder):\n    ",
    "import string\n\n\ndef clean(text):\n    return ",
)
WRITING_SEEDS = range(1, 11)


@pytest.fixture(scope="module")
def backend(gemma_path: Path) -> Iterator[LlamaCppBackend]:
    instance = LlamaCppBackend(LlamaConfig(model_path=gemma_path, n_ctx=2048, n_threads=2))
    yield instance
    instance.close()


@pytest.fixture
def fresh(gemma_path: Path) -> Iterator[LlamaCppBackend]:
    """A worker whose cache holds nothing yet (``backend`` is shared by the module)."""
    instance = LlamaCppBackend(LlamaConfig(model_path=gemma_path, n_ctx=2048, n_threads=2))
    yield instance
    instance.close()


@pytest.fixture(scope="module")
def verifier() -> Verifier:
    return Verifier(CheckSettings(ruff=False))


def legal_after(prompt: str, verifier: Verifier) -> frozenset[str]:
    found = legal_names(Cursor("app.py", "python", prompt, len(prompt)), verifier.resolver)
    assert found is not None, prompt
    return found.names


def first_name(text: str) -> str:
    match = re.match(r"\w*", text)
    assert match is not None
    return match.group()


def named(name: str, text: str, legal: frozenset[str]) -> bool:
    """Whether the generation's first identifier is legal (or, cut by max_tokens, a prefix
    of a legal one)."""
    if text == name:
        return any(candidate.startswith(name) for candidate in legal)
    return name in legal


def test_a_constrained_generation_never_names_an_attribute_the_module_lacks(
    backend: LlamaCppBackend, verifier: Verifier
) -> None:
    unconstrained_wrong: list[str] = []
    for prompt in PROMPTS:
        legal = legal_after(prompt, verifier)
        constraint = NameConstraint(tuple(sorted(legal)))
        for seed in SEEDS:
            free = backend.complete(
                CompletionRequest(prompt=(prompt,), max_tokens=10, temperature=1.0, seed=seed)
            )
            text = free.text()
            if not named(first_name(text), text, legal):
                unconstrained_wrong.append(text)
            stream = backend.complete(
                CompletionRequest(
                    prompt=(prompt,), max_tokens=10, temperature=1.0, seed=seed, names=constraint
                )
            )
            text = stream.text()
            assert named(first_name(text), text, legal), (prompt, seed, text)
            assert stream.usage.constrained_tokens >= 1
    # Without the constraint, the same prompts and seeds do name what does not exist.
    assert unconstrained_wrong


def test_a_small_set_and_a_typed_partial_are_obeyed(backend: LlamaCppBackend) -> None:
    allowed = ("listdir", "getcwd", "sep")
    for seed in SEEDS:
        stream = backend.complete(
            CompletionRequest(
                prompt=("import os\n\nos.",),
                max_tokens=8,
                temperature=1.0,
                seed=seed,
                names=NameConstraint(allowed),
            )
        )
        assert first_name(stream.text()) in allowed
    typed = backend.complete(
        CompletionRequest(
            prompt=("import os\n\nx = os.pa",),
            max_tokens=8,
            names=NameConstraint(("path", "pathsep", "pardir"), typed="pa"),
        )
    )
    assert "pa" + first_name(typed.text()) in {"path", "pathsep", "pardir"}
    healed = backend.complete(
        CompletionRequest(
            prompt=("from os import",),
            max_tokens=8,
            names=NameConstraint(("getcwd", "listdir"), lead=" "),
        )
    )
    text = healed.text()
    assert text.startswith(" ") and first_name(text[1:]) in {"getcwd", "listdir"}


def test_with_the_constraint_absent_generation_is_unchanged(fresh: LlamaCppBackend) -> None:
    if llama_cpp.__version__ != "0.3.36":
        pytest.skip(f"outputs recorded with llama-cpp-python 0.3.36, not {llama_cpp.__version__}")
    for prompt, before in BEFORE.items():
        stream = fresh.complete(CompletionRequest(prompt=(prompt,), max_tokens=24))
        assert stream.text() == before, prompt
        assert stream.usage.constrained_tokens == 0


def test_the_pipeline_with_the_lever_constrains_through_the_worker(
    backend: LlamaCppBackend, verifier: Verifier, tmp_path: Path
) -> None:
    text = "import shutil\n\nx = shutil."
    cursor = Cursor("app.py", "python", text, len(text), abs_path=tmp_path / "app.py")
    settings = PipelineSettings(complete_names=True, candidates=1)
    result = CompletionPipeline(backend, settings, verifier=verifier).complete(cursor)
    assert result.constrained_tokens >= 1
    assert result.text is not None and first_name(result.text) in legal_after(text, verifier)


# -- attributes after a qualifier the generation writes ------------------------------------


def qualified_after(prompt: str, verifier: Verifier) -> QualifiedNames:
    found = qualified_names(Cursor("app.py", "python", prompt, len(prompt)), verifier, "")
    assert found is not None, prompt
    return found


def missing_attributes(text: str, known: QualifiedNames) -> list[str]:
    """Each ``qualifier.name`` in the code of ``text`` whose qualifier lacks the name (a name
    ``text`` ends with, cut by max_tokens, counts when some name starts with it)."""
    table = dict(known.attributes)
    tokens: list[tokenize.TokenInfo] = []
    # An unclosed string or bracket at the end stops tokenizing: the tokens before it stand.
    with contextlib.suppress(tokenize.TokenError, SyntaxError):
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            tokens.append(token)
    wrong = []
    for at in range(1, len(tokens) - 1):
        first, dot, name = tokens[at - 1 : at + 2]
        names = table.get(first.string, ()) if first.type == tokenize.NAME else ()
        if not names or dot.string != "." or name.type != tokenize.NAME:
            continue
        if at > 1 and tokens[at - 2].string == ".":
            continue  # ``a.os.x``: not the qualifier
        cut = text.rstrip().endswith(f"{first.string}.{name.string}")
        if name.string not in names and not (cut and any(n.startswith(name.string) for n in names)):
            wrong.append(f"{first.string}.{name.string}")
    return wrong


def test_a_generated_qualifier_is_never_followed_by_an_attribute_it_lacks(
    backend: LlamaCppBackend, verifier: Verifier
) -> None:
    unconstrained_wrong: list[str] = []
    constrained = 0
    for prompt in WRITING:
        known = qualified_after(prompt, verifier)
        for seed in WRITING_SEEDS:
            request = CompletionRequest(prompt=(prompt,), max_tokens=24, temperature=1.0, seed=seed)
            unconstrained_wrong += missing_attributes(
                prompt + backend.complete(request).text(), known
            )
            stream = backend.complete(replace(request, qualified=known))
            text = stream.text()
            assert not missing_attributes(prompt + text, known), (prompt, seed, text)
            constrained += stream.usage.constrained_tokens
    # Without the table, the same prompts and seeds do write attributes that do not exist.
    assert unconstrained_wrong
    assert constrained > 0


def test_with_a_table_greedy_outputs_whose_attributes_exist_are_unchanged(
    fresh: LlamaCppBackend, verifier: Verifier
) -> None:
    if llama_cpp.__version__ != "0.3.36":
        pytest.skip(f"outputs recorded with llama-cpp-python 0.3.36, not {llama_cpp.__version__}")
    tables = 0
    for prompt, before in BEFORE.items():
        known = qualified_names(Cursor("app.py", "python", prompt, len(prompt)), verifier, "")
        tables += known is not None
        stream = fresh.complete(CompletionRequest(prompt=(prompt,), max_tokens=24, qualified=known))
        assert stream.text() == before, prompt
    assert tables >= 5


def test_the_pipeline_with_the_lever_constrains_a_generated_qualifier(
    backend: LlamaCppBackend, verifier: Verifier, tmp_path: Path
) -> None:
    text = WRITING[0]  # greedy: ``shutil.move(...)``, the qualifier written by the model
    cursor = Cursor("app.py", "python", text, len(text), abs_path=tmp_path / "app.py")
    # A generous timeout: on a busy machine the default would stop it before the attribute.
    settings = PipelineSettings(complete_names=True, candidates=1, timeout_s=120.0)
    result = CompletionPipeline(backend, settings, verifier=verifier).complete(cursor)
    assert result.text is not None and "shutil." in result.text
    assert result.constrained_tokens >= 1


# -- token log-probabilities ---------------------------------------------------------------


def test_logprobs_summarise_the_generated_tokens(backend: LlamaCppBackend) -> None:
    stream = backend.complete(
        CompletionRequest(
            prompt=("def add(a, b):\n    return",), max_tokens=12, temperature=0.8, seed=3
        )
    )
    stream.text()
    scores = stream.usage.logprobs
    assert scores is not None and scores.count == stream.usage.completion_tokens > 1
    assert scores.minimum <= scores.mean <= 0.0
    assert scores.minimum <= scores.first <= 0.0


def test_the_first_logprob_is_the_first_tokens_under_the_model(
    fresh: LlamaCppBackend, gemma_path: Path
) -> None:
    prompt = "import json\n\n\ndef load(path):\n    with open(path) as f:\n        return json."
    stream = fresh.complete(CompletionRequest(prompt=(prompt,), max_tokens=1))
    text = stream.text()
    scores = stream.usage.logprobs
    assert scores is not None and scores.count == 1
    assert scores.first == scores.mean == scores.minimum
    # The same, computed here from llama.cpp's logits at the prompt's last position,
    # evaluated as a fresh worker does (all but the last token, then the last alone:
    # llama.cpp's numbers move by a few hundredths with the batching).
    llm = llama_cpp.Llama(model_path=str(gemma_path), n_ctx=512, n_threads=2, verbose=False)
    try:
        tokens = llm.tokenize(prompt.encode(), add_bos=True, special=False)
        llm.eval(tokens[:-1])
        llm.eval(tokens[-1:])
        pointer = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),)).astype(np.float64)
        token = int(np.argmax(logits))
        assert llm.detokenize([token]).decode() == text
        expected = logits[token] - np.logaddexp.reduce(logits)
    finally:
        llm.close()
    assert scores.first == pytest.approx(expected, abs=1e-4)


def test_a_forced_token_shows_as_unlikely_under_the_model(backend: LlamaCppBackend) -> None:
    prompt = "import os\n\nos."
    free = backend.complete(CompletionRequest(prompt=(prompt,), max_tokens=1))
    free.text()
    forced = backend.complete(
        CompletionRequest(prompt=(prompt,), max_tokens=1, names=NameConstraint(("sep",)))
    )
    assert forced.text() == "sep"
    assert free.usage.logprobs is not None and forced.usage.logprobs is not None
    assert forced.usage.logprobs.first < free.usage.logprobs.first - 1.0
