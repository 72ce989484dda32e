"""detect-secrets, in process and fast enough for indexing: where in a text its plugins find
secrets.

Every default plugin of detect-secrets runs (``default_settings()``: cloud and service
keys, basic-auth URLs, private keys, JWTs, high-entropy strings, keyword assignments),
with its default entropy limits, and with them our own plugins (``indexer/secret_plugins.py``:
token formats and keyword assignments detect-secrets 1.5 misses), loaded as detect-secrets
loads a custom plugin file. Asking each of these 36 plugins about every line costs about
130 ms of CPU per 1,000 lines, ten times what the rest of indexing (parsing, storing) costs,
so a line is only asked of the plugins that could match it (5 to 8 ms per 1,000 lines):

- a regular-expression plugin (or the keyword plugin, through its patterns for the
  file's type) only on lines holding one of the literal strings every match of its
  patterns contains (``indexer.pattern_literals``: ``apikey``/``api_key``, ``password``,
  ``akc``...), found with ``str.find`` in the case-folded text;
- a pattern with no such literal of two characters or more (a public IP address) only
  on lines that a multi-line search of the whole text touches;
- a high-entropy plugin only on lines with a quoted run of its alphabet long enough to
  pass its limit (entropy is at most log2 of the length).

The plugins then see exactly the lines detect-secrets itself would give them
(right-stripped), so what is found does not change; ``find_secrets(..., screen=False)``
asks every plugin about every line, and a test holds the two to the same answers.

Filters: detect-secrets' own, with three changes for an index (what matters here is that
nothing secret is stored, not sparing a reviewer false alarms). Filters that exempt a whole
file by its name (lock files, Swagger files) are not applied: the walk has its own rules.
``is_indirect_reference`` (``password = get_password()``) only vetoes the keyword plugin,
for which it was written: a token or a URL with a password inside a call
(``create_engine("postgresql://u:pw@db/x")``) is still a secret. ``is_not_alphanumeric_string``
(``*****``) does not judge public IP addresses, which never hold a letter.
"""

from __future__ import annotations

import bisect
import importlib
import logging
import math
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from indexer.pattern_literals import required_literals

_MIN_HINT = 2  # shorter required literals occur on most lines: search the pattern instead
_INLINE_IGNORECASE = re.compile(r"\(\?[a-zA-Z]*i")
_MIN_SECRET = 8  # a shorter capture group may be a prefix of the secret (``ghp`` of ``ghp_...``)
# Characters trimmed from the ends of a redacted span: quotes and blanks around a value,
# and what a plugin's pattern matched around the secret (``://user:pass@``, ``="AKC..."``).
_AROUND_VALUE = " \t\"'`\\"
_BEFORE_MATCH = _AROUND_VALUE + "=:/"
_AFTER_MATCH = _AROUND_VALUE + "@"
_ESCAPES = ("\\n", "\\r", "\\t")
_TOKEN_TAIL = re.compile(r"[A-Za-z0-9_\-+/=.]+")
# ``AccountKey=...``: a label a pattern matched with the secret stays readable.
_LABEL = re.compile(r"[A-Za-z_][\w.-]*[=:]")
_INDIRECT_REFERENCE = "detect_secrets.filters.heuristic.is_indirect_reference"
# (plugin, filter) pairs not applied: an IP address has no letter, and the filter meant for
# ``*****`` would silence the public-IP plugin for every address it finds.
_EXEMPT = frozenset(
    {("IPPublicDetector", "detect_secrets.filters.heuristic.is_not_alphanumeric_string")}
)
# Plugins whose match marks where a secret is but is not the secret (the BEGIN line of a
# PEM block): indexer.secrets redacts the key body itself.
_MARKER_PLUGINS = frozenset({"PrivateKeyDetector"})
# Our own plugins, in the form detect-secrets loads custom plugins: a file it imports by path.
_OWN_PLUGINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "secret_plugins.py")


@dataclass(frozen=True)
class Finding:
    """A secret at ``line`` (0-based, in ``text.split("\\n")``), columns ``start:end``.

    ``labelled`` False: the span is removed without a placeholder (the second and later
    lines of one key body carry none, so a key does not become a column of placeholders).
    """

    kind: str
    line: int
    start: int
    end: int
    labelled: bool = True


def kind_of(secret_type: str) -> str:
    """A detect-secrets secret type as a short kind: ``AWS Access Key`` -> ``aws-access-key``."""
    return re.sub(r"[^a-z0-9]+", "-", secret_type.lower()).strip("-")


@dataclass
class _Screen:
    """Which lines one plugin needs to see."""

    hints: frozenset[str] = frozenset()  # case-folded literals
    exact_hints: frozenset[str] = frozenset()  # literals of case-sensitive patterns
    patterns: tuple[re.Pattern[str], ...] = ()  # searched over the whole text
    every_line: bool = False


@dataclass
class _Engine:
    plugins: list[Any]
    line_filters: list[Any]
    keyword_filters: list[Any]
    secret_filters: list[Any]
    inject: Callable[..., Any]
    snippet: Callable[[list[str], int], Any]
    keyword_patterns: Callable[[str], Mapping[re.Pattern[str], int] | None]
    screens: dict[tuple[int, str], _Screen] = field(default_factory=dict)
    plans: dict[str, _Plan] = field(default_factory=dict)


_engine: _Engine | None = None
_engine_lock = threading.Lock()


def _load() -> _Engine:
    """The plugins and filters of detect-secrets' default settings, instantiated once.

    Our own plugins (``indexer/secret_plugins.py``) are added first, as detect-secrets adds
    a custom plugin file (``--plugin``): loaded by path, after which its default settings
    run them with its own. ``default_settings()`` changes detect-secrets' global settings
    for as long as it is entered, so the plugin objects are taken inside it, once, under a
    lock; they hold their own patterns and limits. No plugin verifies a secret over the
    network: that needs a filter the default settings do not enable.
    """
    global _engine
    with _engine_lock:
        if _engine is not None:
            return _engine
        shown = warnings.showwarning
        from detect_secrets.core.plugins.initialize import from_file
        from detect_secrets.settings import default_settings, get_filters, get_plugins
        from detect_secrets.util.code_snippet import get_code_snippet
        from detect_secrets.util.inject import call_function_with_arguments

        # Importing detect-secrets turns on logging.captureWarnings for the whole process.
        if warnings.showwarning is not shown:
            logging.captureWarnings(False)
        from_file(_OWN_PLUGINS)
        with default_settings():
            plugins = list(get_plugins())
            filters = list(get_filters())
        secret_filters = [f for f in filters if "secret" in f.injectable_variables]
        line_filters = [
            f
            for f in filters
            if "secret" not in f.injectable_variables
            and f.injectable_variables - {"filename"}
            and f.path != _INDIRECT_REFERENCE
        ]
        keyword_filters = [f for f in filters if f.path == _INDIRECT_REFERENCE]
        _engine = _Engine(
            plugins,
            line_filters,
            keyword_filters,
            secret_filters,
            call_function_with_arguments,
            get_code_snippet,
            _keyword_patterns_loader(),
        )
        return _engine


def _keyword_patterns_loader() -> Callable[[str], Mapping[re.Pattern[str], int] | None]:
    """The keyword plugin's patterns (and secret group) for a file name, when they can be read."""
    try:
        keyword = importlib.import_module("detect_secrets.plugins.keyword")
        by_type: Mapping[Any, Mapping[re.Pattern[str], int]] = keyword.REGEX_BY_FILETYPE
        default: Mapping[re.Pattern[str], int] = keyword.QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP
        file_type: Callable[[str], Any] = keyword.determine_file_type
    except (ImportError, AttributeError):
        return lambda filename: None
    return lambda filename: by_type.get(file_type(filename), default)


def plugin_names() -> list[str]:
    """The class names of the detect-secrets plugins that run (its defaults and our own)."""
    return [type(plugin).__name__ for plugin in _load().plugins]


def plugin_types() -> dict[str, str]:
    """The secret type (``kind_of`` gives the kind) of each plugin that runs, by class name."""
    return {type(plugin).__name__: plugin.secret_type for plugin in _load().plugins}


def find_secrets(text: str, filename: str, *, screen: bool = True) -> list[Finding]:
    """Where detect-secrets' plugins find secrets in ``text``, in line order.

    ``filename`` picks the keyword plugin's rules and the allowlist comment syntax by its
    extension; nothing is read from it. ``screen`` False asks every plugin about every line
    (the reference the screened scan must agree with).
    """
    engine = _load()
    raw_lines = text.split("\n")
    lines = [line.rstrip() for line in raw_lines]
    if screen:
        wanted = _candidates(engine, "\n".join(lines), filename)
    else:
        everyone = list(range(len(engine.plugins)))
        wanted = {number: everyone for number in range(len(lines))}
    findings: list[Finding] = []
    for number in sorted(wanted):
        findings.extend(_scan_line(engine, lines, number, wanted[number], filename))
    return findings


# -- which lines each plugin needs to see -----------------------------------------------------


def _screen(engine: _Engine, index: int, filename: str) -> _Screen:
    from detect_secrets.plugins.base import RegexBasedDetector
    from detect_secrets.plugins.high_entropy_strings import HighEntropyStringsPlugin
    from detect_secrets.plugins.keyword import KeywordDetector

    plugin = engine.plugins[index]
    keyword = isinstance(plugin, KeywordDetector)
    key = (index, os.path.splitext(filename)[1] if keyword else "")
    known = engine.screens.get(key)
    if known is not None:
        return known
    patterns: Iterable[re.Pattern[str]] | None = None
    if keyword:
        found = engine.keyword_patterns(filename)
        patterns = list(found) if found is not None and plugin.keyword_exclude is None else None
    elif isinstance(plugin, RegexBasedDetector):
        patterns = list(plugin.denylist)
    if patterns is not None:
        result = _pattern_screen(patterns)
    elif isinstance(plugin, HighEntropyStringsPlugin):
        # Shannon entropy is at most log2(length): shorter strings cannot pass the limit.
        shortest = math.floor(2**plugin.entropy_limit) + 1
        quoted = r"(['\"])[" + re.escape(plugin.charset) + "]{" + str(shortest) + r",}\1"
        result = _Screen(patterns=(re.compile(quoted),))
    else:
        result = _Screen(every_line=True)  # a plugin this module does not know
    engine.screens[key] = result
    return result


def _pattern_screen(patterns: Iterable[re.Pattern[str]]) -> _Screen:
    hints: set[str] = set()
    exact: set[str] = set()
    searched: list[re.Pattern[str]] = []
    for pattern in patterns:
        literals = required_literals(pattern)
        if literals is None or min(map(len, literals)) < _MIN_HINT:
            searched.append(re.compile(pattern.pattern, pattern.flags | re.MULTILINE))
        elif pattern.flags & re.IGNORECASE or _INLINE_IGNORECASE.search(pattern.pattern):
            hints.update(literal.casefold() for literal in literals)
        else:
            exact.update(literals)
    return _Screen(frozenset(hints), frozenset(exact), tuple(searched))


@dataclass(frozen=True)
class _Plan:
    """The screens of every plugin for one file type, arranged for one pass over a text."""

    every_line: tuple[int, ...]  # plugins shown every line
    patterns: tuple[tuple[re.Pattern[str], int], ...]  # (pattern searched, its plugin)
    # (hint, case-folded?, the shorter searched hint it contains or None, its plugins),
    # shortest first: only hints containing no shorter one are searched in the whole text.
    hints: tuple[tuple[str, bool, str | None, tuple[int, ...]], ...]


def _plan(engine: _Engine, filename: str) -> _Plan:
    key = os.path.splitext(filename)[1]  # what the keyword plugin's rules depend on
    known = engine.plans.get(key)
    if known is not None:
        return known
    every: list[int] = []
    patterns: list[tuple[re.Pattern[str], int]] = []
    by_hint: dict[tuple[str, bool], list[int]] = {}
    for index in range(len(engine.plugins)):
        screen = _screen(engine, index, filename)
        if screen.every_line:
            every.append(index)
        patterns += [(pattern, index) for pattern in screen.patterns]
        for hint in screen.hints:
            by_hint.setdefault((hint, True), []).append(index)
        for hint in screen.exact_hints:
            by_hint.setdefault((hint, False), []).append(index)
    searched: list[str] = []
    hints: list[tuple[str, bool, str | None, tuple[int, ...]]] = []
    for hint, fold in sorted(by_hint, key=lambda item: (len(item[0]), item)):
        folded = hint if fold else hint.casefold()
        base = next((b for b in searched if b in folded), None)
        if base is None:
            searched.append(folded)
        hints.append((hint, fold, base, tuple(by_hint[hint, fold])))
    plan = _Plan(tuple(every), tuple(patterns), tuple(hints))
    engine.plans[key] = plan
    return plan


def _candidates(engine: _Engine, text: str, filename: str) -> dict[int, list[int]]:
    """Line number -> the plugins (indexes) that line must be shown to."""
    plan = _plan(engine, filename)
    breaks = _breaks(text)
    folded = text.casefold()
    folded_breaks = breaks if len(folded) == len(text) else _breaks(folded)
    lines_of: dict[int, set[int]] = {index: set() for index in range(len(engine.plugins))}
    for index in plan.every_line:
        lines_of[index].update(range(len(breaks) + 1))
    for pattern, index in plan.patterns:
        for match in pattern.finditer(text):
            first = bisect.bisect_left(breaks, match.start())
            lines_of[index].update(range(first, bisect.bisect_left(breaks, match.end()) + 1))
    searched: dict[str, list[int]] = {}
    split: dict[bool, list[str]] = {}

    def texts(fold: bool) -> list[str]:
        if fold not in split:
            split[fold] = (folded if fold else text).split("\n")
        return split[fold]

    for hint, fold, base, indexes in plan.hints:
        if base is None:
            found = searched[hint.casefold()] = list(
                _lines_holding(folded, folded_breaks, hint.casefold())
            )
            if not fold:  # found case-folded; the pattern wants the case as written
                found = [n for n in found if hint in texts(False)[n]]
        else:
            found = [n for n in searched[base] if hint in texts(fold)[n]]
        for index in indexes:
            lines_of[index].update(found)
    wanted: dict[int, list[int]] = {}
    for index, numbers in lines_of.items():
        for number in numbers:
            wanted.setdefault(number, []).append(index)
    return wanted


def _breaks(text: str) -> list[int]:
    return [match.start() for match in re.finditer("\n", text)]


def _lines_holding(text: str, breaks: Sequence[int], needle: str) -> Iterator[int]:
    """The numbers of the lines of ``text`` that contain ``needle``, each once."""
    pos = text.find(needle)
    while pos != -1:
        line = bisect.bisect_left(breaks, pos)
        yield line
        if line >= len(breaks):
            return
        pos = text.find(needle, breaks[line])


# -- one line ---------------------------------------------------------------------------------


def _scan_line(
    engine: _Engine, lines: list[str], number: int, plugins: Sequence[int], filename: str
) -> Iterator[Finding]:
    from detect_secrets.plugins.keyword import KeywordDetector

    line = lines[number]
    context = engine.snippet(lines, number + 1)
    inject = engine.inject
    for check in engine.line_filters:
        if inject(check, filename=filename, line=line, context=context):
            return
    for index in sorted(plugins):
        plugin = engine.plugins[index]
        keyword = isinstance(plugin, KeywordDetector)
        if keyword and any(inject(check, line=line) for check in engine.keyword_filters):
            continue
        found = plugin.analyze_line(
            filename=filename, line=line, line_number=number + 1, context=context
        )
        if not found or type(plugin).__name__ in _MARKER_PLUGINS:
            continue
        kind = kind_of(plugin.secret_type)
        name = type(plugin).__name__
        checks = [f for f in engine.secret_filters if (name, f.path) not in _EXEMPT]
        for secret in found:
            value = secret.secret_value
            if not value or any(
                inject(check, secret=value, line=line, plugin=plugin, context=context)
                for check in checks
            ):
                continue
            for start, end in _spans(engine, plugin, keyword, line, value, filename):
                if start < end:
                    yield Finding(kind, number, start, end)


def _spans(
    engine: _Engine, plugin: Any, keyword: bool, line: str, value: str, filename: str
) -> list[tuple[int, int]]:
    """Where in ``line`` the secret ``value`` a plugin reported is.

    A plugin reports a value, not a place, and a pattern's reported value is its first
    capture group when it has one (the GitHub pattern captures ``ghp`` of ``ghp_...``): so
    the value's place is found by matching the plugin's own patterns again, and a group
    shorter than a secret stands for its whole match.
    """
    spans: list[tuple[int, int]] = []
    if keyword:
        for pattern, group in (engine.keyword_patterns(filename) or {}).items():
            match = pattern.search(line)
            if match is not None and match.group(group) == value:
                spans.append(_trim(line, match.span(group), _AROUND_VALUE))
    elif hasattr(plugin, "denylist"):
        for pattern in plugin.denylist:
            for match in pattern.finditer(line):
                groups = [g for g in range(1, pattern.groups + 1) if match.group(g) == value]
                # The group is the secret when it is long, or all the match has after it is
                # punctuation (a short password before ``@``); else a prefix (``ghp``).
                whole = not groups or (
                    len(value) < _MIN_SECRET
                    and match.group()[match.end(groups[0]) - match.start() :].strip(_AFTER_MATCH)
                )
                if not whole:
                    span = _trim(line, match.span(groups[0]), _AROUND_VALUE)
                elif groups or match.group(0) == value:
                    span = _trim(line, match.span(), _BEFORE_MATCH, _AFTER_MATCH)
                    span = _after_label(line, span)
                else:
                    continue
                # A pattern may stop short of the token (the JWT one before its signature).
                tail = _TOKEN_TAIL.match(line, span[1])
                spans.append((span[0], tail.end() if tail else span[1]))
    if spans:
        return spans
    return [
        _trim(line, (start, start + len(value)), _AROUND_VALUE) for start in _places(line, value)
    ]


def _places(line: str, value: str) -> list[int]:
    """Where ``value`` occurs in ``line``; only where it stands alone if it does anywhere."""
    starts = [m.start() for m in re.finditer(re.escape(value), line)]
    alone = [
        s
        for s in starts
        if not (s > 0 and line[s - 1].isalnum())
        and not (s + len(value) < len(line) and line[s + len(value)].isalnum())
    ]
    return alone or starts


def _trim(
    line: str, span: tuple[int, int], chars: str, after: str | None = None
) -> tuple[int, int]:
    """``span`` without the ``chars`` at its start and the ``after`` (or ``chars``) at its end."""
    start, end = span
    after = chars if after is None else after
    while True:  # blanks, quotes, and escapes (the base64 alphabet of detect-secrets holds "\\")
        if start < end and line[start] in chars:
            start += 1
        elif line.startswith(_ESCAPES, start, end):
            start += 2
        elif end > start and line[end - 1] in after:
            end -= 1
        elif end - start >= 2 and line[end - 2 : end] in _ESCAPES:
            end -= 2
        else:
            return start, end


def _after_label(line: str, span: tuple[int, int]) -> tuple[int, int]:
    start, end = span
    label = _LABEL.match(line, start, end)
    if label is not None and end - label.end() >= _MIN_SECRET:
        return label.end(), end
    return start, end
