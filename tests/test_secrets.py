"""Secrets never reach the index, a search hit or a prompt, and the rest of their file does.

Two sets of fake secrets, built at run time so no secret-shaped literal sits in this file:
the six kinds a security review found stored, searchable and sent in prompts (each test of
them fails against the old pattern-based check, which let them through), and one secret for
every detect-secrets plugin, its defaults and our own (the set is compared with the plugins
the scan runs, so a plugin added or removed upstream fails here). Each goes through a real
index over a git repository (fake embedder), the search API, and the completion pipeline with
a fake backend whose prompts are read back.
"""

from __future__ import annotations

import ast
import base64
import json
import logging
import random
import string
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from indexer.embed import FakeEmbedder
from indexer.index import IndexSettings, RepositoryIndex
from indexer.retrieval import Retriever
from lsp.core.pipeline import CompletionPipeline, Cursor, index_context
from model.runtime.api import render_prompt
from model.runtime.fake import FakeBackend

ALNUM = string.ascii_letters + string.digits
LOWER = string.ascii_lowercase + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"
DASHES = "-" * 5


def fake(alphabet: str, length: int, seed: int = 7) -> str:
    """A random-looking token built at run time."""
    return "".join(random.Random(f"{seed}{alphabet}{length}").choices(alphabet, k=length))


def pem(label: str = "RSA PRIVATE KEY", lines: int = 8, seed: int = 3) -> str:
    """A fake PEM private key (random base64 body)."""
    body = "\n".join(fake(B64, 64, seed + n) for n in range(lines)) + "\n" + fake(B64, 20, seed)
    return f"{DASHES}BEGIN {label}{DASHES}\n{body}=\n{DASHES}END {label}{DASHES}\n"


def jwt() -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    claims = {"sub": "u-1842", "name": "Ada", "iat": 1700000000}
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.{fake(URLSAFE, 43)}"


# -- the six kinds ------------------------------------------------------------------------


@dataclass(frozen=True)
class Leak:
    """A fake file holding secrets, and how to find the rest of it."""

    path: str
    text: str
    secrets: tuple[str, ...]
    kept: str  # a non-secret word of the file that must stay indexed and retrievable
    query: str = ""  # words of a search query that finds the file


def django_settings() -> Leak:
    # Django's startproject alphabet: letters, digits and !@#$%^&*(-_=+)
    key = "django-insecure-" + fake(LOWER + "!@#$%^&*(-_=+)", 50, 11)
    key = key[:30] + "(" + key[30:40] + ")" + key[40:]
    text = (
        '"""Django settings for the shop project."""\n\n'
        "from pathlib import Path\n\n"
        "BASE_DIR = Path(__file__).resolve().parent.parent\n\n"
        "# SECURITY WARNING: keep the secret key used in production secret!\n"
        f"SECRET_KEY = '{key}'\n\n"
        "DEBUG = False\n"
        'ALLOWED_HOSTS = ["shop.example.com"]\n\n\n'
        "def database_settings(name):\n"
        '    """The DATABASES entry for one shop database."""\n'
        '    return {"ENGINE": "django.db.backends.postgresql", "NAME": name}\n'
    )
    return Leak("shop/settings.py", text, (key,), "database_settings", "database settings shop")


def long_token() -> Leak:
    token = fake(URLSAFE, 320, 12)
    text = (
        '"""Uploads build artefacts to the release bucket."""\n\n'
        f'UPLOAD_TOKEN = "{token}"\n\n\n'
        "def upload_artefact(path):\n"
        '    """Send one artefact with the upload token."""\n'
        "    return post(path, headers={'Authorization': UPLOAD_TOKEN})\n"
    )
    return Leak("release/upload.py", text, (token,), "upload_artefact", "upload artefact release")


def azure_connection() -> Leak:
    key = fake(B64, 86, 13) + "=="
    connection = (
        "DefaultEndpointsProtocol=https;AccountName=shopassets;"
        f"AccountKey={key};EndpointSuffix=core.windows.net"
    )
    text = (
        '"""Blob storage for product images."""\n\n'
        f'STORAGE_CONNECTION = "{connection}"\n\n\n'
        "def image_container(client):\n"
        '    return client.get_container_client("product-images")\n'
    )
    return Leak("media/storage.py", text, (key,), "image_container", "image container storage")


def kubeconfig() -> Leak:
    encoded = base64.b64encode(pem(seed=14).encode()).decode()
    certificate = base64.b64encode(b"not a secret: the public certificate").decode()
    text = (
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n"
        "    server: https://k8s.shop.internal:6443\n  name: shop-production\n"
        "contexts:\n- context:\n    cluster: shop-production\n    user: deployer\n"
        "  name: shop-production\ncurrent-context: shop-production\n"
        "users:\n- name: deployer\n  user:\n"
        f"    client-certificate-data: {certificate}\n"
        f"    client-key-data: {encoded}\n"
    )
    return Leak("deploy/kubeconfig.yaml", text, (encoded,), "shop-production", "deployer cluster")


def notebook() -> Leak:
    key = fake(ALNUM, 32, 15)
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Weather forecasts\n"]},
        {
            "cell_type": "code",
            "execution_count": 1,
            "metadata": {},
            "outputs": [],
            "source": [
                "import requests\n",
                "\n",
                f'WEATHER_API_KEY = "{key}"\n',
                "\n",
                "def forecast_for(city):\n",
                "    return requests.get(URL, params={'q': city, 'appid': WEATHER_API_KEY})\n",
            ],
        },
    ]
    document = {
        "cells": cells,
        "metadata": {"language_info": {"name": "python", "file_extension": ".py"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    text = json.dumps(document, indent=1) + "\n"
    return Leak("notebooks/weather.ipynb", text, (key,), "forecast_for", "forecast city weather")


def database_url() -> Leak:
    password = fake(ALNUM, 20, 16)
    text = (
        '"""The orders database."""\n\n'
        f'DATABASE_URL = "postgresql://orders:{password}@db.shop.internal:5432/orders"\n\n\n'
        "def open_orders_database(create_engine):\n"
        "    return create_engine(DATABASE_URL, pool_size=5)\n"
    )
    return Leak("orders/db.py", text, (password,), "open_orders_database", "orders database")


SIX: dict[str, Callable[[], Leak]] = {
    "django-secret-key": django_settings,
    "long-token": long_token,
    "azure-connection-string": azure_connection,
    "kubeconfig-client-key": kubeconfig,
    "notebook-api-key": notebook,
    "database-url-password": database_url,
}


# -- one fake secret for every detect-secrets plugin ----------------------------------------


def _corpus() -> dict[str, tuple[str, str]]:
    """Plugin class name -> (a fake secret it detects, the assignment holding it)."""
    upper = string.ascii_uppercase + string.digits
    key = pem(lines=4, seed=37)
    values = {
        "ArtifactoryDetector": ("ARTIFACTORY_TOKEN", "AKC" + fake(ALNUM, 70, 21)),
        "AWSKeyDetector": ("AWS_ACCESS_KEY", "AK" + "IA" + fake(upper, 16, 22)),
        "AzureStorageKeyDetector": ("BLOB_KEY", fake(B64, 86, 23) + "=="),
        "BasicAuthDetector": ("BROKER_URL", fake(ALNUM, 18, 24)),
        "CloudantDetector": ("cloudant_password", fake(HEX, 64, 25)),
        "DiscordBotTokenDetector": (
            "DISCORD_BOT",
            "M" + fake(URLSAFE, 24, 26) + "." + fake(URLSAFE, 6, 27) + "." + fake(URLSAFE, 27, 28),
        ),
        "GitHubTokenDetector": ("GITHUB_TOKEN", "gh" + "p_" + fake(ALNUM, 36, 29)),
        "GitLabTokenDetector": ("GITLAB_TOKEN", "gl" + "pat-" + fake(ALNUM, 20, 30)),
        "Base64HighEntropyString": ("SIGNING_SALT", fake(B64, 40, 31)),
        "HexHighEntropyString": ("CHECKSUM_SEED", fake(HEX, 40, 32)),
        "IbmCloudIamDetector": ("ibm_cloud_iam_api_key", fake(URLSAFE, 44, 33)),
        "IbmCosHmacDetector": ("cos_hmac_secret_access_key", fake(HEX, 48, 34)),
        "IPPublicDetector": ("METRICS_HOST", "203.0." + "113.77"),
        "JwtTokenDetector": ("SERVICE_JWT", jwt()),
        "KeywordDetector": ("db_password", "correct-horse-battery-staple"),
        "MailchimpDetector": ("MAILCHIMP", fake(HEX, 32, 35) + "-us12"),
        "NpmDetector": ("NPM_TOKEN", "npm_" + fake(ALNUM, 36, 36)),
        "OpenAIDetector": (
            "OPENAI",
            "sk-" + fake(ALNUM, 20, 37) + "T3Blbk" + "FJ" + fake(ALNUM, 20, 38),
        ),
        "PrivateKeyDetector": ("SIGNING_KEY", key),
        "PypiTokenDetector": ("PYPI_TOKEN", "pypi-AgEIcHlwaS5vcmc" + fake(URLSAFE, 80, 39)),
        "SendGridDetector": (
            "SENDGRID",
            "SG." + fake(URLSAFE, 22, 40) + "." + fake(URLSAFE, 43, 41),
        ),
        "SlackDetector": ("SLACK_BOT", "xox" + "b-2718281828-3141592653-" + fake(LOWER, 24, 42)),
        "SoftlayerDetector": ("softlayer_api_key", fake(LOWER, 64, 43)),
        "SquareOAuthDetector": ("SQUARE", "sq0" + "csp-" + fake(URLSAFE, 43, 44)),
        "StripeDetector": ("STRIPE", "sk" + "_live_" + fake(ALNUM, 24, 45)),
        "TelegramBotTokenDetector": ("TELEGRAM", "918273645:" + fake(URLSAFE, 35, 46)),
        "TwilioKeyDetector": ("TWILIO_ACCOUNT", "AC" + fake(LOWER, 32, 47)),
        # Our own plugins (indexer/secret_plugins.py), loaded as detect-secrets custom plugins.
        "AnthropicKeyDetector": ("ANTHROPIC", "sk-ant-api03-" + fake(URLSAFE, 93, 81) + "AA"),
        "AssignedSecretDetector": ("AUTH_TOKEN", fake(ALNUM, 20, 82)),
        "AwsSecretAccessKeyDetector": ("AWS_SECRET_ACCESS_KEY", fake(B64, 40, 83)),
        "GitHubFineGrainedTokenDetector": (
            "GITHUB_FINE_GRAINED",
            "github" + "_pat_" + fake(ALNUM, 22, 84) + "_" + fake(ALNUM, 59, 85),
        ),
        "GoogleApiKeyDetector": ("MAPS_BROWSER", "AI" + "za" + fake(URLSAFE, 35, 86)),
        "GoogleOAuthClientSecretDetector": ("OAUTH_CLIENT", "GOCSPX-" + fake(URLSAFE, 28, 87)),
        "HuggingFaceTokenDetector": ("HF_HUB", "hf" + "_" + fake(ALNUM, 34, 88)),
        "NpmAccessTokenDetector": ("NPM_PUBLISH", "npm" + "_" + fake(ALNUM, 36, 89)),
        "OpenAIKeyDetector": ("OPENAI_PROJECT", "sk-" + "proj-" + fake(URLSAFE, 48, 90)),
    }
    shaped = {
        "AzureStorageKeyDetector": "DefaultEndpointsProtocol=https;AccountName=assets;"
        "AccountKey={};EndpointSuffix=core.windows.net",
        "BasicAuthDetector": "amqp://worker:{}@mq.shop.internal:5672/",
        "NpmDetector": "//registry.npmjs.org/:_authToken={}",
    }
    corpus = {}
    for plugin, (name, value) in values.items():
        literal = shaped.get(plugin, "{}").format(value)
        quote = '"""' if "\n" in literal else '"'
        corpus[plugin] = (value, f"{name} = {quote}{literal}{quote}\n")
    return corpus


CORPUS = _corpus()


def secret_parts(value: str) -> list[str]:
    """What must not be stored of a secret: the value, or each line of a key's body."""
    lines = [line for line in value.split("\n") if line and not line.startswith(DASHES)]
    return lines or [value]


def corpus_file(plugin: str) -> Leak:
    value, line = CORPUS[plugin]
    snake = "".join("_" + c.lower() if c.isupper() else c for c in plugin).strip("_")
    name = line.split(" ", 1)[0]
    text = (
        f'"""Credentials of the {plugin} integration."""\n\n'
        f"{line}\n\n"
        f"def {snake}_client(connect):\n"
        f"    return connect({name})\n"
    )
    return Leak(f"integrations/{snake}.py", text, tuple(secret_parts(value)), f"{snake}_client")


# -- a real index over a git repository -----------------------------------------------------


def git_repo(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    return root


@dataclass
class Built:
    """A repository and its index (open), built by the project's own indexing API."""

    repo: Path
    location: Path
    index: RepositoryIndex


def build(root: Path, leaks: list[Leak]) -> Built:
    repo = git_repo(root / "repo", {leak.path: leak.text for leak in leaks})
    location = root / "index"
    index = RepositoryIndex(repo, IndexSettings(location=location), embedder=FakeEmbedder())
    index.update()
    index.embed_pending()
    return Built(repo, location, index)


def stored_bytes(location: Path) -> bytes:
    """Every byte the index wrote (database, write-ahead log, vectors, meta)."""
    return b"".join(path.read_bytes() for path in sorted(location.rglob("*")) if path.is_file())


@pytest.fixture(scope="module")
def six(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Leak], Built]]:
    leaks = {kind: make() for kind, make in SIX.items()}
    built = build(tmp_path_factory.mktemp("six"), list(leaks.values()))
    yield leaks, built
    built.index.close()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Leak], Built]]:
    leaks = {plugin: corpus_file(plugin) for plugin in CORPUS}
    built = build(tmp_path_factory.mktemp("corpus"), list(leaks.values()))
    yield leaks, built
    built.index.close()


def prompt_for(built: Built, path: str, text: str) -> str:
    """The prompt the completion pipeline sends for a cursor at the end of ``text``."""
    backend = FakeBackend(respond=lambda prompt: "\n")
    context = index_context(Retriever(built.index), semantic=True)
    pipeline = CompletionPipeline(backend, context=context)
    pipeline.complete(Cursor(path=path, language="python", text=text, offset=len(text)))
    return "\n".join(render_prompt(request.prompt) for request in backend.requests)


def assert_kept_out(leak: Leak, built: Built) -> None:
    """No part of the leak's secrets in the index; the rest of its file there and findable."""
    stored = stored_bytes(built.location)
    leaked = [secret for secret in leak.secrets if secret.encode() in stored]
    assert not leaked, f"{leak.path}: {len(leaked)} secret(s) stored in the index"
    chunks = [chunk for _, chunk in built.index.store.chunks_of(leak.path)]
    assert chunks, f"{leak.path} was not indexed"
    assert any(leak.kept in chunk.text for chunk in chunks)
    assert any("<redacted:" in chunk.text for chunk in chunks)


@pytest.mark.parametrize("kind", sorted(SIX))
def test_six_kinds_are_not_stored(kind: str, six: tuple[dict[str, Leak], Built]) -> None:
    leaks, built = six
    assert_kept_out(leaks[kind], built)


@pytest.mark.parametrize("kind", sorted(SIX))
def test_six_kinds_are_not_in_search_hits(kind: str, six: tuple[dict[str, Leak], Built]) -> None:
    leaks, built = six
    leak = leaks[kind]
    hits = built.index.search(f"{leak.kept} {leak.query}", 10)
    mine = [hit for hit in hits if hit.chunk.path == leak.path]
    assert mine, [hit.chunk.path for hit in hits]
    for hit in hits:
        shown = json.dumps(hit.as_json()) + hit.chunk.text
        assert not any(secret in shown for secret in leak.secrets)


def assert_not_in_prompt(leak: Leak, built: Built, text: str) -> None:
    """The prompt for ``text`` holds the leak's redacted line, and none of its secrets."""
    prompt = prompt_for(built, "app/use.py", text)
    redacted = [
        line.strip()
        for _, chunk in built.index.store.chunks_of(leak.path)
        for line in chunk.text.split("\n")
        if "<redacted:" in line
    ]
    assert leak.path in prompt and any(line in prompt for line in redacted), prompt
    assert not any(secret in prompt for secret in leak.secrets)


@pytest.mark.parametrize("kind", sorted(SIX))
def test_six_kinds_are_not_in_prompts(kind: str, six: tuple[dict[str, Leak], Built]) -> None:
    leaks, built = six
    leak = leaks[kind]
    assert_not_in_prompt(leak, built, f"def use():\n    # {leak.query}\n    value = {leak.kept}(")


# -- every detect-secrets plugin ------------------------------------------------------------


def test_the_corpus_covers_every_plugin_detect_secrets_runs() -> None:
    from indexer.secret_scan import plugin_names

    assert sorted(CORPUS) == sorted(plugin_names())


@pytest.mark.parametrize("plugin", sorted(CORPUS))
def test_each_plugin_finds_its_corpus_secret(plugin: str) -> None:
    from indexer.secret_scan import find_secrets, kind_of, plugin_types
    from indexer.secrets import redact_secrets

    leak = corpus_file(plugin)
    secret_type = plugin_types()[plugin]
    kinds = {finding.kind for finding in find_secrets(leak.text, leak.path)}
    # The private-key plugin reports the BEGIN line; the body is found by our PEM rule.
    if plugin == "PrivateKeyDetector":
        kinds = set(redact_secrets(leak.text, leak.path).kinds)
    assert kind_of(secret_type) in kinds


@pytest.mark.parametrize("plugin", sorted(CORPUS))
def test_plugin_corpus_is_not_stored(plugin: str, corpus: tuple[dict[str, Leak], Built]) -> None:
    leaks, built = corpus
    assert_kept_out(leaks[plugin], built)


@pytest.mark.parametrize("plugin", sorted(CORPUS))
def test_plugin_corpus_is_not_in_search_hits_or_prompts(
    plugin: str, corpus: tuple[dict[str, Leak], Built]
) -> None:
    leaks, built = corpus
    leak = leaks[plugin]
    name = CORPUS[plugin][1].split(" ", 1)[0]
    hits = built.index.search(f"{leak.kept} {name}", 5)
    assert any(hit.chunk.path == leak.path for hit in hits)
    for hit in hits:
        assert not any(
            secret in hit.chunk.text + json.dumps(hit.as_json()) for secret in leak.secrets
        )
    assert_not_in_prompt(
        leak, built, f"def use(connect):\n    client = {leak.kept}(connect)\n    {name}"
    )


# -- the scan itself -------------------------------------------------------------------------


def _variants(text: str) -> Iterator[str]:
    """The same text as files hold it: CRLF line ends, trailing blanks, the secret first."""
    yield text
    yield text.replace("\n", "\r\n")
    yield text.replace("\n", "  \n")
    yield "\n".join(reversed(text.split("\n")))


def test_screened_scan_finds_what_every_plugin_on_every_line_finds() -> None:
    from indexer.secret_scan import find_secrets

    root = Path(__file__).resolve().parent.parent
    texts = [(leak.path, leak.text) for leak in (make() for make in SIX.values())]
    texts += [(corpus_file(p).path, corpus_file(p).text) for p in CORPUS]
    texts += [(p, (root / p).read_text()) for p in ("indexer/walk.py", "tests/test_walk.py")]
    for path, text in texts:
        for variant in _variants(text):
            assert find_secrets(variant, path) == find_secrets(variant, path, screen=False), path


def test_redacted_files_still_parse() -> None:
    import yaml

    from indexer.secrets import redact_secrets

    for leak in [*(make() for make in SIX.values()), *(corpus_file(p) for p in CORPUS)]:
        redacted = redact_secrets(leak.text, leak.path).text
        if leak.path.endswith(".py"):
            ast.parse(redacted)
        elif leak.path.endswith(".yaml"):
            yaml.safe_load(redacted)
        elif leak.path.endswith(".ipynb"):
            cells = json.loads(redacted)["cells"]
            ast.parse("".join(cells[1]["source"]))
        assert "<redacted:" in redacted


def test_redaction_is_stable_and_keeps_string_escapes() -> None:
    from indexer.secrets import redact_secrets

    body = [fake(B64, 64, 61), fake(B64, 64, 62)]
    concatenated = (
        f'KEY = ("{DASHES}BEGIN RSA PRIVATE KEY{DASHES}\\n"\n'
        + "".join(f'       "{line}\\n"\n' for line in body)
        + f'       "{DASHES}END RSA PRIVATE KEY{DASHES}\\n")\n'
    )
    redacted = redact_secrets(concatenated, "keys.py").text
    assert not any(line in redacted for line in body)
    assert ast.literal_eval(redacted.partition("= ")[2]).count("\n") == 4  # escapes kept
    # Indexing text that was read (redacted) and saved again redacts nothing new.
    for leak in [*(make() for make in SIX.values()), *(corpus_file(p) for p in CORPUS)]:
        once = redact_secrets(leak.text, leak.path)
        assert redact_secrets(once.text, leak.path).text == once.text, leak.path


@pytest.mark.parametrize(
    "line",
    [
        'SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "{django}")\n',
        'SECRET_KEY = env("SECRET_KEY", default="{django}")\n',
        'engine = create_engine("postgresql://app:{pw}!x@db/prod")\n',
        '{{"type": "service_account", "private_key": "{key}"}}\n',
        "    tls.key: {encoded}\n",
        'client = OpenAI(api_key="sk-proj-{token}")\n',
    ],
)
def test_forms_detect_secrets_alone_misses(line: str) -> None:
    from indexer.secrets import redact_secrets

    django = "django-insecure-" + fake(LOWER + "!@#$%^&*(-_=+)", 50, 51)
    key = pem("PRIVATE KEY", 3, 52).replace("\n", "\\n")
    secrets = {
        "django": django,
        "pw": fake(ALNUM, 12, 53),
        "key": key,
        "encoded": base64.b64encode(pem(seed=54).encode()).decode(),
        "token": fake(URLSAFE, 48, 55),
    }
    text = line.format(**secrets)
    redacted = redact_secrets(text, "config.py").text
    for name, secret in secrets.items():
        if "{" + name + "}" in line:
            for part in secret_parts(secret.replace("\\n", "\n")):
                assert part not in redacted, (part, redacted)
    if text.startswith("{"):
        json.loads(redacted)  # the JSON string keeps its \n escapes


@pytest.mark.parametrize(
    "text",
    [
        'password = os.environ["DB_PASSWORD"]\n',
        "def login(user: str, password=None) -> None: ...\n",
        "class Settings:\n    api_key: str\n    secret: str | None = None\n",
        'secret = get_secret("payments-api-prod")\n',
        'api_key = "${API_KEY}"\n',
        "token = tokenizer.next_token()\n",
        "password: ${DB_PASSWORD}\n",
        'if line.startswith("-----BEGIN RSA PRIVATE' + ' KEY-----"):\n    return parse(line)\n',
        'URL = "postgresql://app:${DB_PASSWORD}@db/prod"\n',
        'DSN = "https://user:%(password)s@host/"\n',
        'HOSTS = ["127.0.0.1", "10.0.0.2", "192.168.1.1"]\n',
        'CACHE_DIR = "~/.cache/apprentice/index"\n',
    ],
)
def test_ordinary_code_is_left_alone(text: str) -> None:
    from indexer.secrets import redact_secrets

    assert redact_secrets(text, "app.py").text == text


def test_few_lines_of_ordinary_source_are_redacted() -> None:
    """False positives, measured on this project's own code (which holds no secret; the two
    modules about secrets quote example credentials in their docstrings)."""
    from indexer.secrets import redact_secrets

    root = Path(__file__).resolve().parent.parent
    sources = [*root.glob("indexer/*.py"), *root.glob("lsp/*.py"), *root.glob("model/*.py")]
    total = changed = 0
    for path in sorted(sources):
        if path.name in ("secrets.py", "secret_scan.py"):
            continue
        text = path.read_text()
        redacted = redact_secrets(text, path.name).text
        total += text.count("\n")
        changed += sum(a != b for a, b in zip(text.split("\n"), redacted.split("\n"), strict=True))
    assert changed * 1000 <= total, (changed, total)


# -- where text enters the index ------------------------------------------------------------


def test_saved_text_is_redacted_before_it_is_stored(tmp_path: Path) -> None:
    leak = database_url()
    built = build(tmp_path, [Leak("orders/db.py", '"""Orders."""\n', (), "")])
    with built.index as index:
        (built.repo / leak.path).write_text(leak.text)
        assert index.update_file(leak.path, leak.text)
        assert_kept_out(leak, built)


def test_a_failed_scan_stores_nothing_of_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import indexer.secrets

    def broken(text: str, filename: str) -> list[object]:
        raise RuntimeError("scanner fault")

    monkeypatch.setattr(indexer.secrets, "find_secrets", broken)
    leak = django_settings()
    built = build(tmp_path, [leak])
    with built.index as index:
        assert not list(index.store.chunks_of(leak.path))
        assert not index.update_file(leak.path, leak.text)
    assert leak.secrets[0].encode() not in stored_bytes(built.location)


def test_logs_name_kinds_never_values(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    leaks = [make() for make in SIX.values()]
    with caplog.at_level(logging.DEBUG):
        build(tmp_path, leaks).index.close()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "django-secret-key" in logged and "basic-auth-credentials" in logged
    for leak in leaks:
        assert not any(secret in logged for secret in leak.secrets)


def test_required_literals_of_a_pattern() -> None:
    import re

    from indexer.pattern_literals import required_literals

    assert required_literals(re.compile(r"(ghp|gho)_[A-Za-z0-9]{36}")) == {"ghp_", "gho_"}
    assert required_literals(re.compile(r"(api_?key|secret)\w*")) == {
        "apikey",
        "api_key",
        "secret",
    }
    assert required_literals(re.compile(r"[a-z]+\d*")) is None
