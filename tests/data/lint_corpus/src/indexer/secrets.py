"""Secret detection for the walk: file names that hold credentials and contents that leak them.

Both checks answer with the *kind* of secret (``"private-key"``, ``"aws-access-key-id"``...)
and never with the secret itself, so callers can log the answer safely.

Every ``.env*`` file is treated as a secret, templates included: ``.env.example``
files are often filled with real values by mistake, and their names alone help no
completion. ``credentials*`` and ``secrets.*`` only count when they are data files
(``credentials.json``, ``secrets.yaml``); source modules such as ``credentials.py``
or ``secrets.py`` are code, and their contents are still scanned.
"""

from __future__ import annotations

import logging
import math
import re
import string
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath

logger = logging.getLogger(__name__)

_SECRET_NAMES = frozenset(
    {
        ".netrc",
        "_netrc",
        ".npmrc",
        ".pypirc",
        ".git-credentials",
        ".htpasswd",
        ".pgpass",
        ".dockercfg",
        ".s3cfg",
    }
)
_SECRET_SUFFIXES = (
    ".pem",
    ".key",
    ".p12",
    ".p8",
    ".pfx",
    ".pkcs12",
    ".ppk",
    ".jks",
    ".keystore",
    ".kdbx",
    ".tfvars",
    ".tfvars.json",
    ".tfstate",
    ".tfstate.backup",
    ".credentials",
)
_SECRET_PREFIXES = ("id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", ".env")
# Suffixes of data files: ``credentials.json`` is a secret, ``credentials.py`` is code.
_DATA_SUFFIXES = frozenset(
    {
        "",
        ".json",
        ".yaml",
        ".yml",
        ".toml",
        ".ini",
        ".cfg",
        ".conf",
        ".txt",
        ".xml",
        ".csv",
        ".properties",
        ".env",
        ".bak",
        ".old",
    }
)


def is_secret_path(rel_path: str) -> bool:
    """Whether the file's name marks it as holding credentials (keys, ``.env*``, tokens)."""
    pure = PurePosixPath(rel_path.replace("\\", "/").lower())
    name = pure.name
    if (
        name in _SECRET_NAMES
        or name.startswith(_SECRET_PREFIXES)
        or name.endswith(_SECRET_SUFFIXES)
    ):
        return True
    if rel_path.lower().replace("\\", "/").endswith((".docker/config.json", ".aws/config")):
        return True
    if name.startswith(("service-account", "service_account", "client_secret")):
        return name.endswith(".json")
    if name.startswith(("credentials", "secrets.", "secret.")):
        return pure.suffix in _DATA_SUFFIXES
    return False


def _entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(value)
    total = len(value)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


_PLACEHOLDER = re.compile(
    r"example|sample|dummy|placeholder|changeme|change_me|your[_-]|xxxx|\*\*\*|\.\.\.|\$\{|\{\{"
    r"|%\(|<|://",
    re.IGNORECASE,
)
_HEX = re.compile(r"[0-9a-fA-F]+")
_TOKEN = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
_DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")


def _looks_random(value: str) -> bool:
    """Whether a literal looks like a generated credential rather than a word or an identifier.

    Random strings reach an entropy near log2(length); words, identifiers and
    sentences stay well below it. Hex digests have a 16-letter alphabet, so they get
    their own, lower bar.
    """
    if len(value) < 16 or _PLACEHOLDER.search(value) or _DOTTED_NAME.fullmatch(value):
        return False
    classes = sum(
        (
            any(c.islower() for c in value),
            any(c.isupper() for c in value),
            any(c.isdigit() for c in value),
        )
    )
    if classes < 2:
        return False
    # Identifiers, module paths and passphrases split into few long word-like runs
    # (``test_password_123``); generated strings switch character class every char or two.
    tokens = _TOKEN.findall(value)
    if sum(map(len, tokens)) >= 4 * len(tokens):
        return False
    entropy = _entropy(value)
    if _HEX.fullmatch(value):
        return len(value) >= 32 and entropy >= 3.3
    return entropy >= min(4.0, math.log2(len(value)) - 0.7)


# Each pattern is tried only when its cheap substring hint occurs in the text, so a
# clean file costs a few ``in`` scans instead of a dozen regex passes.
_PATTERNS: tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...] = (
    (
        "private-key",
        ("PRIVATE KEY",),
        # The header alone is also what PEM parsers contain; a key has a base64 body.
        re.compile(
            r"-----BEGIN[A-Z0-9 ]{0,30}PRIVATE KEY(?: BLOCK)?-----[\s\S]{0,300}?[A-Za-z0-9+/]{40}"
        ),
    ),
    (
        "aws-access-key-id",
        ("AKIA", "ASIA"),
        # AWS documents its example keys with an EXAMPLE suffix (AKIAIOSFODNN7EXAMPLE).
        re.compile(r"\b(?:AKIA|ASIA)(?![0-9A-Z]*EXAMPLE)[0-9A-Z]{16}\b"),
    ),
    (
        "aws-secret-access-key",
        ("aws", "AWS"),
        re.compile(
            r"(?i)aws_?secret_?(?:access_?)?key\W{0,3}\s*[:=]+>?\s*[\"']?"
            r"([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
        ),
    ),
    ("google-api-key", ("AIza",), re.compile(r"\bAIza[0-9A-Za-z_\-]{35}(?![0-9A-Za-z_\-])")),
    (
        "github-token",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{50,})"),
    ),
    ("huggingface-token", ("hf_",), re.compile(r"\bhf_[A-Za-z0-9]{34,}")),
    ("gitlab-token", ("glpat-",), re.compile(r"\bglpat-[A-Za-z0-9_\-]{20,}")),
    ("slack-token", ("xox",), re.compile(r"\bxox[abprs]-[0-9A-Za-z]{6,}-[0-9A-Za-z-]{6,}")),
    (
        "slack-webhook",
        ("hooks.slack.com",),
        re.compile(r"hooks\.slack\.com/services/T[0-9A-Z]{6,}/B[0-9A-Z]{6,}/[0-9A-Za-z]{16,}"),
    ),
    ("stripe-key", ("_live_",), re.compile(r"\b[sr]k_live_[0-9A-Za-z]{20,}")),
    ("anthropic-key", ("sk-ant-",), re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{32,}")),
    (
        "jwt",
        ("eyJ",),
        re.compile(r"\beyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}"),
    ),
)

# ``sk-`` also starts CSS classes and slugs, so the key body must look random.
_OPENAI_KEY = re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?([A-Za-z0-9_\-]{32,})")

_KEYWORD = (
    r"(?:password|passwd|passphrase|secret|api[_-]?key|access[_-]?key|private[_-]?key"
    r"|auth[_-]?token|access[_-]?token|refresh[_-]?token|bearer[_-]?token|token)"
)
# ``password = "..."``, ``"api_key": "..."``, ``secret: str = "..."``, ``token => '...'``.
_ASSIGNED_LITERAL = re.compile(
    _KEYWORD + r"[A-Za-z0-9_\-]*[\"'\]]?\s*"
    r"(?::\s*[A-Za-z_][\w\[\]., |]{0,40}?\s*=|:=|=>|==?|:)\s*"
    # Brackets, braces and commas mark type annotations and code, never a credential.
    r"[rbuRBU]{0,2}([\"'`])([^\"'`\s\\()\[\]{}<>,;]{16,256})\1",
    re.IGNORECASE,
)
# ``API_KEY=abc...`` / ``api_key: abc...`` in env, INI and YAML files, value unquoted.
_ASSIGNED_BARE = re.compile(
    r"^[ \t]*(?:export[ \t]+)?[A-Za-z0-9_.\-]*" + _KEYWORD + r"[A-Za-z0-9_.\-]*[ \t]*[:=][ \t]*"
    r"([A-Za-z0-9+/_\-]{20,256}={0,2})[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_KEYWORD_HINTS = ("pass", "secret", "key", "token")


_SERVICE_ACCOUNT = re.compile(r'"type"\s*:\s*"service_account"')
_SERVICE_ACCOUNT_KEY = re.compile(r'"private_key"\s*:\s*"-----BEGIN')


def _is_service_account(text: str) -> bool:
    return bool(_SERVICE_ACCOUNT.search(text) and _SERVICE_ACCOUNT_KEY.search(text))


def _openai_key(text: str) -> bool:
    return any(_looks_random(m.group(1)) for m in _OPENAI_KEY.finditer(text))


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _keyword_lines(text: str) -> Iterator[tuple[int, int]]:
    """Start and end offsets of each line that holds a keyword of ``_KEYWORD``.

    The assignment patterns start with a case-insensitive alternation, which the
    regex engine tries at every offset; finding the few lines worth trying with
    ``str.find`` first makes the scan about twenty times faster.
    """
    # Lower-casing must keep offsets, and str.lower() lengthens a few characters ("İ").
    # A string that keeps its length kept every offset (lower() never shortens a char).
    lowered = text.lower()
    if len(lowered) != len(text):
        lowered = text.translate(_ASCII_LOWER)
    starts: set[int] = set()
    for hint in _KEYWORD_HINTS:
        pos = lowered.find(hint)
        while pos != -1:
            start = text.rfind("\n", 0, pos) + 1
            end = text.find("\n", pos)
            end = len(text) if end == -1 else end
            if start not in starts:
                starts.add(start)
                yield start, end
            pos = lowered.find(hint, end)


def _assigned_secret(text: str) -> bool:
    for start, end in _keyword_lines(text):
        for match in _ASSIGNED_LITERAL.finditer(text, start, end):
            if _looks_random(match.group(2)):
                return True
        bare = _ASSIGNED_BARE.search(text, start, end)
        # Unquoted values are often identifiers (``password: DB_PASSWORD``): demand all
        # three character classes, as generated tokens have.
        if bare is not None:
            value = bare.group(1)
            if (
                any(c.islower() for c in value)
                and any(c.isupper() for c in value)
                and any(c.isdigit() for c in value)
                and _looks_random(value)
            ):
                return True
    return False


_CHECKS: tuple[tuple[str, tuple[str, ...], Callable[[str], object]], ...] = (
    ("gcp-service-account", ("service_account",), _is_service_account),
    *((kind, hints, pattern.search) for kind, hints, pattern in _PATTERNS),
    ("openai-key", ("sk-",), _openai_key),
    ("assigned-secret", ("",), _assigned_secret),
)


def find_secret(text: str) -> str | None:
    """The kind of the first secret found in ``text`` (never the secret itself), or None."""
    for kind, hints, check in _CHECKS:
        if any(hint in text for hint in hints) and check(text):
            return kind
    return None
