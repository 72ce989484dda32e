"""What a suggestion must not slip in unasked: a new URL or host, a subprocess or network
call, ``eval``/``exec`` of a string.

Repository context can carry text written to steer the model (prompt injection), and a small
model copies what it sees. A suggestion with any of these is still offered when the user
asks for one explicitly; it is never shown as automatic ghost text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

HazardKind = Literal["url", "host", "process", "network", "eval"]

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,15}://[^\s'\"`<>()\[\]{}]+")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
# A dotted name inside a string literal whose last label is a common top-level domain.
_HOST = re.compile(
    r"(?<![\w.@/-])(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?:com|net|org|io|dev|ai|co|app|cloud|xyz|info|biz|me|sh|ru|cn|tk|top|site|online|"
    r"us|uk|de|fr|jp|in|br|onion)(?::\d{1,5})?(?![\w.-])"
)
_STRING = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"|`[^`]*`")

# Calls that start a process, by language family (word-bounded, as written in code).
_PROCESS = re.compile(
    r"\bsubprocess\b|\bos\.(?:system|popen|exec\w*|spawn\w*|fork\w*|posix_spawn\w*)\b"
    r"|\bpty\.spawn\b|\bcreate_subprocess_(?:exec|shell)\b|\bPopen\b|\bcommands\.getoutput\b"
    r"|\bchild_process\b|\bexecSync\b|\bspawnSync\b|\bexecFile\b"
    r"|\bexec\.Command\b|\bCommand::new\b|\bRuntime\.getRuntime\(\)\.exec\b|\bProcessBuilder\b"
    r"|(?<![\w.])(?:system|popen|execv\w*|execl\w*|fork)\s*\("
)
_NET_MODULES = (
    r"(?:socket|requests|httpx|aiohttp|urllib\d?|http\.client|httplib|ftplib|smtplib|"
    r"telnetlib|paramiko|websockets?|xmlrpc|pycurl|grpc)"
)
_NETWORK = re.compile(
    rf"(?<![\w.]){_NET_MODULES}\.\w|\bimport\s+{_NET_MODULES}\b|\bfrom\s+{_NET_MODULES}\b|\burlopen\b"
    r"|(?<![\w.])fetch\s*\(|\bXMLHttpRequest\b|\bWebSocket\b|\baxios\b"
    r"|\bnet\.(?:connect|createConnection|Dial\w*)\b|\bhttps?\.(?:get|request|Get|Post|NewRequest)\b"
    r"|\bTcpStream\b|\bUdpSocket\b|\breqwest\b|\bHttpClient\b|\bURLConnection\b"
    r"|\bconnect\s*\(\s*\(\s*['\"]"
)
# eval/exec of code held in a string, and their JavaScript relatives.
_EVAL = re.compile(
    r"(?<![\w.])(?:eval|exec|execfile)\s*\(|\bbuiltins\.(?:eval|exec)\b|\bnew\s+Function\s*\("
    r"|\bset(?:Timeout|Interval)\s*\(\s*['\"`]|\bcompile\s*\([^)]*['\"]exec['\"]"
)


@dataclass(frozen=True)
class Hazard:
    """One thing a suggestion introduces that needs the user's explicit request."""

    kind: HazardKind
    detail: str  # the matched text (may come from the model: log it at DEBUG only)

    @property
    def reason(self) -> str:
        """The reason in words, without the suggestion's own text."""
        return _REASONS[self.kind]


_REASONS: dict[HazardKind, str] = {
    "url": "it introduces a URL",
    "host": "it introduces a host name or address",
    "process": "it starts a subprocess",
    "network": "it makes a network call",
    "eval": "it runs code from a string (eval/exec)",
}


def hazards(suggestion: str, buffer: str) -> list[Hazard]:
    """What ``suggestion`` introduces that must not be shown unasked.

    URLs and hosts count when the buffer (``buffer``: the document before the insertion)
    does not already contain them; a process, network or eval call counts wherever it is.
    """
    found: list[Hazard] = []
    for match in _URL.finditer(suggestion):
        if match.group(0) not in buffer:
            found.append(Hazard("url", match.group(0)))
    urls = " ".join(m.group(0) for m in _URL.finditer(suggestion))
    for match in _IPV4.finditer(suggestion):
        if match.group(0) not in buffer and match.group(0) not in urls:
            found.append(Hazard("host", match.group(0)))
    for literal in _STRING.finditer(suggestion):
        for match in _HOST.finditer(literal.group(0)):
            host = match.group(0)
            if host not in buffer and host not in urls:
                found.append(Hazard("host", host))
    calls: tuple[tuple[HazardKind, re.Pattern[str]], ...] = (
        ("process", _PROCESS),
        ("network", _NETWORK),
        ("eval", _EVAL),
    )
    for kind, pattern in calls:
        call = pattern.search(suggestion)
        if call is not None:
            found.append(Hazard(kind, call.group(0)))
    return found
