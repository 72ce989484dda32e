"""Secrets in the repository: files whose names mark them as credentials, and secrets inside
any other file, redacted before its text is stored or shown.

Files named as credentials (``.env*``, ``*.pem``, ``id_rsa``, ``credentials.json`` ...) are
never read: their names alone help no completion. Every ``.env*`` file counts, templates
included (``.env.example`` files are often filled with real values by mistake);
``credentials*`` and ``secrets.*`` only count when they are data files, since modules such as
``credentials.py`` or ``secrets.py`` are code.

In every other file, :func:`redact_secrets` replaces each secret with ``<redacted:KIND>``
(inside its quotes, so the code still parses) and keeps the rest of the file for retrieval.
The secrets are found by detect-secrets (``indexer.secret_scan``: its default plugins, and
plugins of our own for token formats and keyword assignments it does not know,
``indexer/secret_plugins.py``), and by four rules of our own for what no line-by-line plugin
sees: the body of a PEM private key (detect-secrets reports only
its BEGIN line), a private key encoded in base64 (a kubeconfig's ``client-key-data``, a
Kubernetes secret's ``tls.key``), Django's generated ``django-insecure-`` keys wherever
they stand (a default in ``os.environ.get("SECRET_KEY", "...")`` is no assignment the
keyword plugin reads), and URL passwords holding ``!$&'()*+,;=``, where detect-secrets'
basic-auth pattern stops. A token found once is redacted wherever else it occurs in the file.
Notebooks are scanned cell by cell after JSON decoding, then as raw text.

Kinds, never values, are what callers log.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from indexer.secret_scan import Finding, find_secrets

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


def placeholder(kind: str) -> str:
    """What a secret of ``kind`` is replaced with."""
    return f"<redacted:{kind}>"


@dataclass(frozen=True)
class Redaction:
    """A text with its secrets replaced, and how many of each kind were."""

    text: str
    kinds: dict[str, int] = field(default_factory=dict)


def redact_secrets(text: str, path: str) -> Redaction:
    """``text`` with every secret found in it replaced by a placeholder.

    ``path`` gives the file type (its extension picks the rules; ``.ipynb`` is decoded
    first) and names the file in the log, which says how many secrets of which kinds were
    redacted and never what they were.
    """
    kinds: Counter[str] = Counter()
    if path.lower().endswith(".ipynb"):
        text = _redact_notebook(text, kinds)
    text = _redact(text, PurePosixPath(path).name, kinds)
    if kinds:
        logger.info(
            "redacted %d secret(s) in %s: %s",
            sum(kinds.values()),
            path,
            ", ".join(f"{kind} x{count}" for kind, count in sorted(kinds.items())),
        )
    return Redaction(text, dict(kinds))


def indexable_text(text: str, path: str) -> str | None:
    """The text of a file as the index may store it: every secret found in it redacted.

    None when the scan itself failed: then nothing of the file is stored, rather than
    text nobody looked at.
    """
    try:
        return redact_secrets(text, path).text
    except Exception as error:  # a scanner fault must not put an unscanned file in the index
        logger.warning("not indexing %s: the secret scan failed (%s)", path, type(error).__name__)
        return None


def _redact(text: str, filename: str, kinds: Counter[str]) -> str:
    lines = text.split("\n")
    findings = _findings(text, lines, filename)
    if not findings:
        return text
    by_line: dict[int, list[Finding]] = {}
    for finding in findings:
        by_line.setdefault(finding.line, []).append(finding)
    for number, found in by_line.items():
        lines[number] = _apply(lines[number], found, kinds)
    return "\n".join(lines)


def _findings(text: str, lines: Sequence[str], filename: str) -> list[Finding]:
    """Every secret in ``text``: detect-secrets', our own rules', and their values elsewhere."""
    found = [
        *find_secrets(text, filename),
        *_pem_bodies(text, lines),
        *_encoded_keys(text, lines),
        *_django_keys(text, lines),
        *_url_passwords(text, lines),
    ]
    return [*found, *_elsewhere(text, lines, found)]


# Kinds that say where a secret is rather than what it is: a token's own kind names it first.
_GENERIC_KINDS = frozenset(
    {"base64-high-entropy-string", "hex-high-entropy-string", "secret-keyword", "assigned-secret"}
)


def _apply(line: str, found: Iterable[Finding], kinds: Counter[str]) -> str:
    """``line`` with the spans of ``found`` replaced (overlapping spans merged into one)."""
    merged: list[list[Any]] = []
    # Where spans meet, the most specific kind names them (``slack-token`` before entropy).
    for finding in sorted(found, key=lambda f: (f.start, -f.end, f.kind in _GENERIC_KINDS)):
        if merged and finding.start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], finding.end)
        else:
            merged.append([finding.start, finding.end, finding])
    for start, end, finding in reversed(merged):
        replacement = placeholder(finding.kind) if finding.labelled else ""
        line = line[:start] + replacement + line[end:]
        kinds[finding.kind] += finding.labelled
    return line


def _spreads(value: str) -> bool:
    """Whether a found value is redacted wherever it occurs: a token, not a word (a keyword
    plugin's ``password`` in ``user:password@`` must not take every ``password`` with it)."""
    if len(value) < 8:
        return False
    return len(value) >= 20 or (any(c.isdigit() for c in value) and any(c.isalpha() for c in value))


def _elsewhere(text: str, lines: Sequence[str], found: Sequence[Finding]) -> Iterator[Finding]:
    """Each found token (see ``_spreads``), wherever else it occurs (a test, a comment)."""
    values = {lines[f.line][f.start : f.end]: f.kind for f in found}
    values = {value: kind for value, kind in values.items() if _spreads(value)}
    for value, kind in values.items():
        if text.count(value) < 2:
            continue
        for number, line in enumerate(lines):
            start = line.find(value)
            while start != -1:
                yield Finding(kind, number, start, start + len(value), labelled=True)
                start = line.find(value, start + len(value))


# -- our own rules ------------------------------------------------------------------------

_PEM_BEGIN = re.compile(r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/=]{8,}")
# A body line when no END follows: base64 alone, give or take quotes, commas and a \n escape.
_BODY_LINE = re.compile(r"""[\s"'`,+(]*[A-Za-z0-9+/=]{16,}(?:\\n)?[\s"'`,+)]*""")
_PEM_MAX_LINES = 200
_PLACEHOLDER = re.compile(r"<redacted:[a-z0-9-]+>")


def _pem_bodies(text: str, lines: Sequence[str]) -> Iterator[Finding]:
    """The body of each PEM private key: between BEGIN and END on one line (JSON's
    ``"-----BEGIN ...-----\\nMIIE...\\n-----END ...-----"``), else the base64 runs of the
    lines from BEGIN to END (without an END, of the base64 lines right below BEGIN)."""
    if "PRIVATE KEY" not in text:
        return
    for number, line in enumerate(lines):
        begin = _PEM_BEGIN.search(line)
        if begin is None:
            continue
        end = _PEM_END.search(line, begin.end())
        if end is not None:
            yield Finding("private-key", number, begin.end(), end.start())
            continue
        below = lines[number + 1 : number + 1 + _PEM_MAX_LINES]
        stop = next((i for i, part in enumerate(below) if _PEM_END.search(part)), None)
        if stop is None:
            bare = (i for i, part in enumerate(below) if not _BODY_LINE.fullmatch(part))
            stop = next(bare, len(below))
        body = [(number, line[begin.end() :], begin.end())]
        body += [(number + 1 + i, below[i], 0) for i in range(stop)]
        if stop < len(below) and (end := _PEM_END.search(below[stop])) is not None:
            body.append((number + 1 + stop, below[stop][: end.start()], 0))
        labelled = True
        for where, part, offset in body:
            # A JSON string's "\n" escape is no part of the key ("n" is a base64 letter), nor
            # is a placeholder (text read for the index and saved again).
            part = _PLACEHOLDER.sub(lambda m: " " * len(m.group()), part.replace("\\n", "\\ "))
            for run in _BASE64_RUN.finditer(part):
                yield Finding(
                    "private-key", where, run.start() + offset, run.end() + offset, labelled
                )
                labelled = False


# base64 of "-----BEGIN" (a base64 text starts on a 3-byte boundary, so it always reads so)
_ENCODED_PEM = re.compile(r"LS0tLS1CRUdJT[A-Za-z0-9+/]*={0,2}")


def _encoded_keys(text: str, lines: Sequence[str]) -> Iterator[Finding]:
    """Base64 texts that decode to a PEM private key (``client-key-data: LS0tLS1CRUdJTi...``)."""
    if "LS0tLS1CRUdJT" not in text:
        return
    for number, line in enumerate(lines):
        for match in _ENCODED_PEM.finditer(line):
            encoded = match.group()
            try:
                decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4))
            except (binascii.Error, ValueError):
                continue
            if b"PRIVATE KEY" in decoded[:80]:
                yield Finding("private-key-base64", number, *match.span())


_DJANGO_KEY = re.compile(r"django-insecure-[^\s'\"`]{20,}")


def _django_keys(text: str, lines: Sequence[str]) -> Iterator[Finding]:
    """Django's generated keys (``django-insecure-`` and 50 random characters, parentheses
    included), wherever they stand."""
    if "django-insecure-" not in text:
        return
    for number, line in enumerate(lines):
        for match in _DJANGO_KEY.finditer(line):
            yield Finding("django-secret-key", number, *match.span())


# ``scheme://user:password@``: detect-secrets' basic-auth pattern stops at the characters a
# URL may hold unescaped in a password (``!$&'()*+,;=``), so ``postgresql://app:s3cr3t!@db``
# goes unseen by it.
_URL_PASSWORD = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#\[\]@\"'`<>]+:([^\s/?#\[\]@\"'`<>]+)@"
)


def _url_passwords(text: str, lines: Sequence[str]) -> Iterator[Finding]:
    """Passwords in URLs (``postgresql://user:password@host``), whatever their characters;
    placeholders such as ``${DB_PASSWORD}`` or ``%(password)s`` are left alone."""
    if "://" not in text or "@" not in text:
        return
    for number, line in enumerate(lines):
        if "://" not in line:
            continue
        for match in _URL_PASSWORD.finditer(line):
            password = match.group(1)
            if password[0] not in "$%{<" and any(c.isalnum() for c in password):
                yield Finding("url-password", number, *match.span(1))


# -- notebooks ------------------------------------------------------------------------------


def _redact_notebook(raw: str, kinds: Counter[str]) -> str:
    """A notebook's JSON with the secrets in its cells (sources and text outputs) redacted.

    The cells are scanned as the code they hold (a cell line reads ``api_key = "..."``,
    where the file has ``"api_key = \\"...\\"\\n",``); each changed line is replaced in the
    raw JSON in its escaped form, so the file keeps its layout. Where an escaped form is not
    found as written (an unusual escaping), the notebook is written anew from the redacted
    cells. Text that is not a notebook is left to the plain scan.
    """
    try:
        notebook = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        return raw
    suffix = _cell_suffix(notebook)
    rewrite = False
    for holder, key, filename in _notebook_texts(notebook, suffix):
        value = holder[key]
        text = "".join(value) if isinstance(value, list) else value
        redacted = _redact(text, filename, kinds)
        if redacted == text:
            continue
        holder[key] = redacted.splitlines(keepends=True) if isinstance(value, list) else redacted
        for old, new in zip(text.split("\n"), redacted.split("\n"), strict=True):
            if old == new:
                continue
            forms = {json.dumps(old)[1:-1], json.dumps(old, ensure_ascii=False)[1:-1]}
            present = [form for form in forms if form in raw]
            for form in present:
                raw = raw.replace(form, json.dumps(new, ensure_ascii=False)[1:-1])
            rewrite = rewrite or not present
    if rewrite:
        return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
    return raw


def _cell_suffix(notebook: dict[str, Any]) -> str:
    """The file extension of the notebook's language (``.py`` unless it says otherwise)."""
    metadata = notebook.get("metadata")
    info = metadata.get("language_info") if isinstance(metadata, dict) else None
    extension = info.get("file_extension") if isinstance(info, dict) else None
    if isinstance(extension, str) and re.fullmatch(r"\.\w{1,10}", extension):
        return extension
    return ".py"


def _notebook_texts(notebook: dict[str, Any], suffix: str) -> Iterator[tuple[Any, Any, str]]:
    """(container, key, file name for the rules) of every text in the cells and outputs."""
    for cell in notebook["cells"]:
        if not isinstance(cell, dict):
            continue
        code = cell.get("cell_type") == "code"
        if _is_text(cell.get("source")):
            yield cell, "source", "cell" + (suffix if code else ".md")
        outputs = cell.get("outputs")
        for output in outputs if isinstance(outputs, list) else ():
            if not isinstance(output, dict):
                continue
            for key in ("text", "traceback"):
                if _is_text(output.get(key)):
                    yield output, key, "output.txt"
            data = output.get("data")
            if isinstance(data, dict) and _is_text(data.get("text/plain")):
                yield data, "text/plain", "output.txt"


def _is_text(value: object) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(item, str) for item in value)
    )
