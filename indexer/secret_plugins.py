"""detect-secrets plugins of our own: token formats detect-secrets 1.5 does not know, and the
keyword assignments its keyword plugin does not read.

``indexer.secret_scan`` loads this file the way detect-secrets loads a custom plugin file
(``--plugin``, or a baseline's ``"path": "file://..."``): every public plugin class here
joins its default plugins, is screened by the same literal prefilter, and goes through the
same filters. The module is read by path, so it imports nothing of this project.

What the hand-written detector this scan replaced caught, and detect-secrets alone does not:

- Google API keys (``AIza...``), Hugging Face tokens (``hf_...``), Anthropic keys
  (``sk-ant-...``), OpenAI keys without the ``T3BlbkFJ`` marker detect-secrets' OpenAI plugin
  requires (``sk-proj-...``), GitHub fine-grained tokens (``github_pat_...``), Google OAuth
  client secrets (``GOCSPX-...``) and npm tokens outside an ``.npmrc`` line (``npm_...``);
- an AWS secret access key assigned without quotes (``AWS_SECRET_ACCESS_KEY=...`` in a shell
  script); detect-secrets' AWS plugin wants it quoted;
- a random-looking value assigned to a secret-sounding name: quoted in any file
  (``AUTH_TOKEN = "..."``, ``passphrase: '...'``), or bare on a line of its own
  (``export AUTH_TOKEN=...``, ``api_key: ...`` in a docstring). detect-secrets' keyword plugin
  knows no ``token``, ``passphrase`` or ``access_key``, reads bare values only in
  configuration files (YAML, INI, ``.cfg``, ``.properties``, TOML), and its high-entropy
  plugins pass over quoted values shorter than about 23 characters.

Where a word or an identifier could take a token's place (``sk-`` starts CSS classes,
``token = "..."`` holds tokenizer names), the value must also look generated.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Generator

from detect_secrets.plugins.base import RegexBasedDetector

# -- does a value look generated? ------------------------------------------------------------

_PLACEHOLDER = re.compile(
    r"example|sample|dummy|placeholder|changeme|change_me|your[_-]|xxxx|\*\*\*|\.\.\.|\$\{|\{\{"
    r"|%\(|<|://",
    re.IGNORECASE,
)
_HEX = re.compile(r"[0-9a-fA-F]+")
_WORD_RUN = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
_DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")


def _entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    total = len(value)
    return -sum(n / total * math.log2(n / total) for n in Counter(value).values())


def looks_generated(value: str, *, classes: int = 2) -> bool:
    """Whether ``value`` reads as a generated credential rather than a word, a name or a
    placeholder: at least ``classes`` of lower case, upper case and digits, no long word-like
    runs (``test_password_123``, ``TokenizerConfig``), and an entropy near the most its
    length allows (a random string of n characters reaches about log2(n) bits a character;
    hex digests, with 16 letters, have a lower bar of their own).
    """
    if len(value) < 16 or _PLACEHOLDER.search(value) or _DOTTED_NAME.fullmatch(value):
        return False
    present = (
        any(c.islower() for c in value),
        any(c.isupper() for c in value),
        any(c.isdigit() for c in value),
    )
    if sum(present) < classes:
        return False
    runs = _WORD_RUN.findall(value)
    if sum(map(len, runs)) >= 4 * len(runs):
        return False
    entropy = _entropy(value)
    if _HEX.fullmatch(value):
        return len(value) >= 32 and entropy >= 3.3
    return entropy >= min(4.0, math.log2(len(value)) - 0.7)


class _JudgedDetector(RegexBasedDetector):
    """A pattern plugin whose matches are judged before they count: each pattern's
    ``secret`` group is the value reported, and its ``body`` group (the part after a fixed
    prefix) must look generated."""

    def analyze_string(self, string: str) -> Generator[str, None, None]:
        for pattern in self.denylist:
            for match in pattern.finditer(string):
                if looks_generated(match.group("body")):
                    yield match.group("secret")


# -- token formats ---------------------------------------------------------------------------
# ``secret_type`` is annotated: detect-secrets' keyword plugin reads ``secret_type = "..."``
# in a Python file as a secret assigned to a name, and would redact this module's own types.

_NOT_BEFORE = r"(?<![A-Za-z0-9_-])"
_NOT_AFTER = r"(?![A-Za-z0-9_-])"


class GoogleApiKeyDetector(RegexBasedDetector):
    """Google Cloud and Maps API keys: ``AIza`` and 35 URL-safe characters."""

    secret_type: str = "Google API Key"
    denylist = (re.compile(_NOT_BEFORE + r"AIza[0-9A-Za-z_-]{35}" + _NOT_AFTER),)


class GoogleOAuthClientSecretDetector(RegexBasedDetector):
    """Google OAuth client secrets: ``GOCSPX-`` and its random part."""

    secret_type: str = "Google OAuth Client Secret"
    denylist = (re.compile(_NOT_BEFORE + r"GOCSPX-[0-9A-Za-z_-]{20,}"),)


class HuggingFaceTokenDetector(_JudgedDetector):
    """Hugging Face access tokens: ``hf_`` and 30 or more random letters and digits."""

    secret_type: str = "HuggingFace Token"
    denylist = (
        re.compile(_NOT_BEFORE + r"(?P<secret>hf_(?P<body>[A-Za-z0-9]{30,}))" + _NOT_AFTER),
    )


class AnthropicKeyDetector(RegexBasedDetector):
    """Anthropic API keys: ``sk-ant-`` and 32 or more URL-safe characters."""

    secret_type: str = "Anthropic API Key"
    denylist = (re.compile(_NOT_BEFORE + r"sk-ant-[A-Za-z0-9_-]{32,}"),)


class OpenAIKeyDetector(_JudgedDetector):
    """OpenAI API keys (``sk-``, ``sk-proj-``, ``sk-svcacct-``, ``sk-admin-``) whether or not
    they hold the marker detect-secrets' own OpenAI plugin requires; the part after the
    prefix must look random (``sk-`` also starts CSS classes and slugs)."""

    secret_type: str = "OpenAI API Key"
    denylist = (
        re.compile(
            _NOT_BEFORE
            + r"(?P<secret>sk-(?!ant-)(?:proj-|svcacct-|admin-)?(?P<body>[A-Za-z0-9_-]{32,}))"
        ),
    )


class GitHubFineGrainedTokenDetector(RegexBasedDetector):
    """GitHub fine-grained personal access tokens (``github_pat_``); detect-secrets' GitHub
    plugin knows the ``ghp_``-style prefixes only."""

    secret_type: str = "GitHub Fine-Grained Token"
    denylist = (re.compile(_NOT_BEFORE + r"github_pat_[A-Za-z0-9_]{50,}"),)


class NpmAccessTokenDetector(_JudgedDetector):
    """npm access tokens (``npm_`` and 36 letters and digits) wherever they stand;
    detect-secrets' npm plugin reads them only in an ``.npmrc`` ``_authToken`` line."""

    secret_type: str = "NPM Access Token"
    denylist = (
        re.compile(_NOT_BEFORE + r"(?P<secret>npm_(?P<body>[A-Za-z0-9]{36}))(?![A-Za-z0-9])"),
    )


class AwsSecretAccessKeyDetector(RegexBasedDetector):
    """AWS secret access keys assigned to their usual names, quoted or not
    (``AWS_SECRET_ACCESS_KEY=...``, ``aws_secret_access_key = ...`` in a shell script, an INI
    file or a docstring): 40 characters of base64."""

    secret_type: str = "AWS Secret Access Key"
    denylist = (
        re.compile(
            r"aws_?secret_?(?:access_?)?key\W{0,3}\s*[:=]+>?\s*[\"']?"
            r"([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
            re.IGNORECASE,
        ),
    )


# -- keyword assignments ---------------------------------------------------------------------

# Whatever precedes a keyword is allowed (``AUTH_TOKEN``, ``refresh_token``, ``accessToken``),
# so ``token`` stands for every name ending in it.
_KEYWORD = r"(?:password|passwd|passphrase|secret|api[_-]?key|access[_-]?key|private[_-]?key|token)"


class AssignedSecretDetector(RegexBasedDetector):
    """A random-looking value assigned to a secret-sounding name.

    Quoted, in any file: ``password = "..."``, ``"api_key": "..."``, ``secret: str = "..."``,
    ``token => '...'``, ``token := "..."`` (brackets, braces, commas and blanks in the value
    mark code, never a credential). Bare, on a line of its own (``API_KEY=...``,
    ``export AUTH_TOKEN=...``, ``api_key: ...``), where names of settings and identifiers are
    common (``password: DB_PASSWORD``): then the value needs lower case, upper case and
    digits, as generated tokens have.
    """

    secret_type: str = "Assigned Secret"
    denylist = (
        re.compile(
            _KEYWORD + r"[A-Za-z0-9_\-]*[\"'\]]?\s*"
            r"(?::\s*[A-Za-z_][\w\[\]., |]{0,40}?\s*=|:=|=>|==?|:)\s*"
            r"[rbuRBU]{0,2}([\"'`])(?P<secret>[^\"'`\s\\()\[\]{}<>,;]{16,256})\1",
            re.IGNORECASE,
        ),
        re.compile(
            r"^[ \t]*(?:(?:export|env|arg)[ \t]+)?[A-Za-z0-9_.\-]*" + _KEYWORD + r"[A-Za-z0-9_.\-]*"
            r"[ \t]*[:=][ \t]*(?P<bare>[A-Za-z0-9+/_\-]{20,256}={0,2})[ \t]*(?:[ \t]#.*)?$",
            re.IGNORECASE,
        ),
    )

    def analyze_string(self, string: str) -> Generator[str, None, None]:
        quoted, bare = self.denylist
        for match in quoted.finditer(string):
            if looks_generated(match.group("secret")):
                yield match.group("secret")
        found = bare.search(string)
        if found is not None and looks_generated(found.group("bare"), classes=3):
            yield found.group("bare")
