"""Every kind of secret the hand-written detector caught before the switch to detect-secrets
is still kept out of the index, search hits and prompts.

One fake sample per pattern of that detector (``find_secret`` of 7508d7a, each sample one it
matched), in the files such secrets are found in: shell scripts, INI and YAML files,
docstrings, JavaScript. The formats detect-secrets 1.5 lacks (Google, Hugging Face,
Anthropic and prefix-only OpenAI keys, GitHub fine-grained and npm tokens, Google OAuth
client secrets) and the assignments its keyword plugin does not read (unquoted outside
configuration files, ``token``-style names, short quoted values) are found by our own plugins
(``indexer/secret_plugins.py``). Fakes are built at run time, as in ``test_secrets``.
"""

from __future__ import annotations

import ast
import configparser
import json
import string
from collections.abc import Callable, Iterator

import pytest
import yaml

from tests.test_secrets import (
    ALNUM,
    B64,
    HEX,
    URLSAFE,
    Built,
    Leak,
    _variants,
    assert_kept_out,
    assert_not_in_prompt,
    build,
    fake,
    jwt,
    pem,
    secret_parts,
)

UPPER = string.ascii_uppercase + string.digits


def shell(path: str, kept: str, lines: str, secrets: tuple[str, ...]) -> Leak:
    text = (
        "#!/bin/sh\n# Deploys the shop to the staging cluster.\nset -eu\n\n"
        f"{lines}\n"
        f"{kept}() {{\n    kubectl apply -f deploy/ --context staging\n}}\n\n{kept}\n"
    )
    return Leak(path, text, secrets, kept, "deploy staging cluster")


def python(path: str, kept: str, lines: str, secrets: tuple[str, ...]) -> Leak:
    text = (
        f'"""Clients of the shop\'s partner services."""\n\n{lines}\n\n\n'
        f"def {kept}(session):\n"
        f'    """Open a session to the partner service."""\n'
        f"    return session.connect()\n"
    )
    return Leak(path, text, secrets, kept, "partner service session")


# -- one sample per old pattern -------------------------------------------------------------


def gcp_service_account() -> Leak:
    key = pem("PRIVATE KEY", 4, 101)
    document = {
        "type": "service_account",
        "project_id": "shop-prod",
        "private_key_id": fake(HEX, 40, 102),
        "private_key": key,
        "client_email": "deployer@shop-prod.iam.gserviceaccount.com",
    }
    text = json.dumps(document, indent=2) + "\n"
    secrets = (*secret_parts(key), document["private_key_id"])
    return Leak("deploy/gcp-deployer.json", text, secrets, "deployer", "shop-prod deployer")


def private_key_yaml() -> Leak:
    key = pem("EC PRIVATE KEY", 3, 103)
    body = "".join(f"    {line}\n" for line in key.strip().split("\n"))
    text = f"ingress:\n  host: shop.internal\n  tls_key: |\n{body}  replicas: 3\n"
    return Leak("deploy/ingress.yaml", text, tuple(secret_parts(key)), "ingress", "ingress host")


def aws_access_key_id() -> Leak:
    key_id = "AS" + "IA" + fake(UPPER, 16, 104)
    return shell(
        "scripts/aws_env.sh", "sync_assets", f"export AWS_ACCESS_KEY_ID={key_id}", (key_id,)
    )


def aws_secret_shell() -> Leak:
    secret = fake(B64, 40, 105)
    line = f"export AWS_SECRET_ACCESS_KEY={secret}"
    return shell("scripts/aws_secret.sh", "upload_backups", line, (secret,))


def aws_secret_python() -> Leak:
    secret = fake(B64, 40, 106)
    lines = f'"""Settings.\n\n    aws_secret_access_key = {secret}\n"""\nREGION = "eu-west-1"'
    return python("partners/aws_docs.py", "open_bucket_session", lines, (secret,))


def aws_secret_cfg() -> Leak:
    secret = fake(B64, 40, 107)
    text = (
        "[default]\nregion = eu-west-1\n"
        f"aws_secret_access_key = {secret}\n\n[archiver]\nbucket = shop-archive\n"
    )
    return Leak("config/archiver.cfg", text, (secret,), "archiver", "archiver bucket")


def google_api_key() -> Leak:
    key = "AI" + "za" + fake(URLSAFE, 35, 108)
    # In a URL, the quoted string is no run of base64 the entropy plugins would weigh.
    text = (
        "// The store locator map.\n"
        f"const MAPS_SCRIPT = 'https://maps.googleapis.com/maps/api/js?key={key}&callback=init';\n"
        "\nexport function storeLocatorMap(element) {\n"
        "  return loadScript(MAPS_SCRIPT).then(() => new google.maps.Map(element));\n}\n"
    )
    return Leak("web/maps.js", text, (key,), "storeLocatorMap", "store locator map")


def github_token() -> Leak:
    classic = "gh" + "p_" + fake(ALNUM, 36, 109)
    fine = "github" + "_pat_" + fake(ALNUM, 22, 110) + "_" + fake(ALNUM, 59, 111)
    lines = f"export GH_TOKEN={classic}\nexport RELEASE_BOT={fine}"
    return shell("scripts/release.sh", "publish_release", lines, (classic, fine))


def huggingface_token() -> Leak:
    token = "hf" + "_" + fake(ALNUM, 34, 112)
    lines = f'HUB_TOKEN = "{token}"'
    return python("partners/hub.py", "open_hub_session", lines, (token,))


def gitlab_token() -> Leak:
    token = "gl" + "pat-" + fake(URLSAFE, 20, 113)
    text = f"variables:\n  MIRROR_TOKEN: {token}\nmirror_job:\n  script: ./mirror.sh\n"
    return Leak(".gitlab/mirror.yml", text, (token,), "mirror_job", "mirror job variables")


def slack_token() -> Leak:
    token = "xox" + "b-2718281828-3141592653-" + fake(ALNUM, 24, 114)
    lines = f'ALERTS_BOT = "{token}"'
    return python("partners/alerts.py", "open_alerts_session", lines, (token,))


def slack_webhook() -> Leak:
    path = f"T{fake(UPPER, 9, 115)}/B{fake(UPPER, 9, 116)}/{fake(ALNUM, 24, 117)}"
    text = json.dumps({"deploy_channel": "https://hooks.slack.com/services/" + path}) + "\n"
    return Leak("config/notify.json", text, (path.rsplit("/", 1)[1],), "deploy_channel")


def stripe_key() -> Leak:
    key = "rk" + "_live_" + fake(ALNUM, 24, 118)
    return shell("scripts/billing.sh", "charge_invoices", f"export STRIPE={key}", (key,))


def anthropic_key() -> Leak:
    key = "sk-" + "ant-api03-" + fake(URLSAFE, 93, 119) + "AA"
    line = f"export ANTHROPIC_API_KEY={key}"
    return shell("scripts/summarise.sh", "summarise_reviews", line, (key,))


def jwt_token() -> Leak:
    token = jwt()
    line = f"curl -H 'Authorization: Bearer {token}' https://api.shop.internal/orders"
    return shell("scripts/orders.sh", "list_orders", line, (token,))


def openai_key() -> Leak:
    quoted = "sk-" + "proj-" + fake(URLSAFE, 48, 120)
    bare = "sk-" + fake(ALNUM, 48, 121)
    lines = f'CHAT_KEY = "{quoted}"\n"""\n    OPENAI_API_KEY={bare}\n"""'
    return python("partners/chat.py", "open_chat_session", lines, (quoted, bare))


def assigned_quoted() -> Leak:
    token, refresh, phrase = fake(ALNUM, 20, 122), fake(ALNUM, 24, 123), fake(ALNUM, 18, 124)
    lines = (
        f'AUTH_TOKEN = "{token}"\n'
        f"refresh_token: str = '{refresh}'\n"
        f'SETTINGS = {{"passphrase": "{phrase}"}}'
    )
    return python("partners/auth.py", "open_auth_session", lines, (token, refresh, phrase))


def assigned_bare_shell() -> Leak:
    token, api = fake(ALNUM, 32, 125), fake(ALNUM, 32, 126)
    lines = f"export AUTH_TOKEN={token}\nAPI_KEY={api}  # the staging key"
    return shell("scripts/staging_env.sh", "start_staging", lines, (token, api))


def assigned_bare_docstring() -> Leak:
    key, token = fake(ALNUM, 32, 127), fake(ALNUM, 28, 128)
    lines = f"EXAMPLE_CONFIG = '''\npartner:\n  api_key: {key}\n  access_token: {token}\n'''"
    return python("partners/yaml_style.py", "open_yaml_session", lines, (key, token))


OLD_PATTERNS: dict[str, Callable[[], Leak]] = {
    "gcp-service-account": gcp_service_account,
    "private-key": private_key_yaml,
    "aws-access-key-id": aws_access_key_id,
    "aws-secret-access-key (shell)": aws_secret_shell,
    "aws-secret-access-key (python, unquoted)": aws_secret_python,
    "aws-secret-access-key (cfg)": aws_secret_cfg,
    "google-api-key": google_api_key,
    "github-token": github_token,
    "huggingface-token": huggingface_token,
    "gitlab-token": gitlab_token,
    "slack-token": slack_token,
    "slack-webhook": slack_webhook,
    "stripe-key": stripe_key,
    "anthropic-key": anthropic_key,
    "jwt": jwt_token,
    "openai-key": openai_key,
    "assigned-secret (quoted)": assigned_quoted,
    "assigned-secret (bare, shell)": assigned_bare_shell,
    "assigned-secret (bare, python string)": assigned_bare_docstring,
}


@pytest.mark.parametrize("kind", sorted(OLD_PATTERNS))
def test_old_pattern_is_redacted(kind: str) -> None:
    from indexer.secrets import redact_secrets

    leak = OLD_PATTERNS[kind]()
    redacted = redact_secrets(leak.text, leak.path).text
    left = [secret for secret in leak.secrets if secret in redacted]
    assert not left, (kind, redacted)
    assert leak.kept in redacted


def _parses(path: str, text: str) -> None:
    if path.endswith(".py"):
        ast.parse(text)
    elif path.endswith((".yaml", ".yml")):
        yaml.safe_load(text)
    elif path.endswith(".json"):
        json.loads(text)
    elif path.endswith(".cfg"):
        configparser.ConfigParser().read_string(text)


@pytest.mark.parametrize("kind", sorted(OLD_PATTERNS))
def test_redacted_old_pattern_files_still_parse(kind: str) -> None:
    from indexer.secrets import redact_secrets

    leak = OLD_PATTERNS[kind]()
    _parses(leak.path, leak.text)
    redacted = redact_secrets(leak.text, leak.path)
    _parses(leak.path, redacted.text)
    assert redact_secrets(redacted.text, leak.path).text == redacted.text  # stable


def test_screened_scan_agrees_on_the_old_patterns() -> None:
    from indexer.secret_scan import find_secrets

    for make in OLD_PATTERNS.values():
        leak = make()
        for variant in _variants(leak.text):
            expected = find_secrets(variant, leak.path, screen=False)
            assert find_secrets(variant, leak.path) == expected, leak.path


# -- through the index ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def old(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Leak], Built]]:
    leaks = {kind: make() for kind, make in OLD_PATTERNS.items()}
    built = build(tmp_path_factory.mktemp("old"), list(leaks.values()))
    yield leaks, built
    built.index.close()


@pytest.mark.parametrize("kind", sorted(OLD_PATTERNS))
def test_old_pattern_is_not_stored(kind: str, old: tuple[dict[str, Leak], Built]) -> None:
    leaks, built = old
    assert_kept_out(leaks[kind], built)


@pytest.mark.parametrize("kind", sorted(OLD_PATTERNS))
def test_old_pattern_is_not_in_search_hits_or_prompts(
    kind: str, old: tuple[dict[str, Leak], Built]
) -> None:
    leaks, built = old
    leak = leaks[kind]
    hits = built.index.search(f"{leak.kept} {leak.query}", 10)
    assert any(hit.chunk.path == leak.path for hit in hits), [hit.chunk.path for hit in hits]
    for hit in hits:
        shown = hit.chunk.text + json.dumps(hit.as_json())
        assert not any(secret in shown for secret in leak.secrets)
    assert_not_in_prompt(leak, built, f"def use():\n    # {leak.query}\n    value = {leak.kept}(")


# -- what the new plugins leave alone -------------------------------------------------------


@pytest.mark.parametrize(
    "path, text",
    [
        ("app.py", 'TOKENIZER = "bert-base-multilingual-uncased"\n'),
        ("app.py", "api_key: SecretStr | None = None\n"),
        ("app.py", "token = AutoTokenizer.from_pretrained(MODEL_NAME)\n"),
        ("app.py", 'access_token = request.headers["X-Access-Token"]\n'),
        ("app.py", "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 = load_model()\n"),
        ("app.py", 'CLASSES = "sk-navigation-sidebar-collapsed-with-overlay"\n'),
        ("app.py", 'password_reset_template = "emails/password_reset_confirmation.txt"\n'),
        ("app.py", "npm_packageJsonDependenciesResolutionCache = {}\n"),
        ("deploy.sh", "export API_KEY=$STAGING_API_KEY\n"),
        ("deploy.sh", "export AUTH_TOKEN=${AUTH_TOKEN:-placeholder}\n"),
        (".env.sh", "SECRET_KEY_SETTING=django_secret_key_setting_name\n"),
        ("config.yaml", "password: DB_PASSWORD_FROM_VAULT\n"),
        ("config.yaml", "token_endpoint: https://auth.shop.internal/token\n"),
        ("app.py", 'AWS_SECRET_ACCESS_KEY = os.environ["AWS_SECRET_ACCESS_KEY"]\n'),
        ("app.py", "AIza = 'the prefix of Google API keys'\n"),
    ],
)
def test_new_plugins_leave_ordinary_text_alone(path: str, text: str) -> None:
    """None of our plugins reports these (detect-secrets' keyword plugin redacts two of them:
    its own choice, unchanged)."""
    from indexer.secret_scan import find_secrets, kind_of, plugin_types

    own = {kind_of(secret_type) for name, secret_type in plugin_types().items() if name in _OWN}
    assert not [f.kind for f in find_secrets(text, path) if f.kind in own]


def test_own_plugins_are_loaded_as_detect_secrets_custom_plugins() -> None:
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    from indexer.secret_scan import plugin_types

    own = {name for name, _ in plugin_types().items() if name not in _DEFAULTS}
    assert own == _OWN
    registered = {cls.__name__ for cls in get_mapping_from_secret_type_to_class().values()}
    assert own <= registered
    assert len(set(plugin_types().values())) == len(plugin_types())  # one type each


_OWN = {
    "AnthropicKeyDetector",
    "AssignedSecretDetector",
    "AwsSecretAccessKeyDetector",
    "GitHubFineGrainedTokenDetector",
    "GoogleApiKeyDetector",
    "GoogleOAuthClientSecretDetector",
    "HuggingFaceTokenDetector",
    "NpmAccessTokenDetector",
    "OpenAIKeyDetector",
}
_DEFAULTS = {
    *("ArtifactoryDetector", "AWSKeyDetector", "AzureStorageKeyDetector", "BasicAuthDetector"),
    *("CloudantDetector", "DiscordBotTokenDetector", "GitHubTokenDetector"),
    *("GitLabTokenDetector", "Base64HighEntropyString", "HexHighEntropyString"),
    *("IbmCloudIamDetector", "IbmCosHmacDetector", "IPPublicDetector", "JwtTokenDetector"),
    *("KeywordDetector", "MailchimpDetector", "NpmDetector", "OpenAIDetector"),
    *("PrivateKeyDetector", "PypiTokenDetector", "SendGridDetector", "SlackDetector"),
    *("SoftlayerDetector", "SquareOAuthDetector", "StripeDetector"),
    *("TelegramBotTokenDetector", "TwilioKeyDetector"),
}


def test_own_plugins_are_screened_by_literals() -> None:
    """Each pattern of our plugins has literal strings the prefilter finds with ``str.find``
    (no pattern is searched over whole texts, no plugin sees every line)."""
    import indexer.secret_plugins as own
    from indexer.pattern_literals import required_literals

    plugins = [getattr(own, name) for name in sorted(_OWN)]
    for plugin in plugins:
        for pattern in plugin.denylist:
            literals = required_literals(pattern)
            assert literals and min(map(len, literals)) >= 3, (plugin.__name__, literals)
    hf = own.HuggingFaceTokenDetector.denylist[0]
    assert required_literals(hf) == {"hf_"}
    assert "token" in (required_literals(own.AssignedSecretDetector.denylist[1]) or ())
