"""The one grammar that names a model, wherever one is named.

``--model`` and ``model.path``, ``apprentice eval --model``, ``distill --teacher``,
``train --base`` and ``apprentice model info`` all read what they are given with
``parse_model_spec``. The forms:

- a GGUF file (any path that is not a directory);
- a checkpoint directory;
- an installed checkpoint, ``NAME[@VERSION]`` (a word with no ``/`` that is not a file here);
- ``base``: the embedded model alone; ``student``: the student shipped in ``model/student``;
- ``default`` or nothing: whichever of those two is the default;
- ``MODEL+ADAPTER.gguf``: a LoRA adapter file on any of the above;
- ``http(s)://host[:port][/v1][#model-id]``: an OpenAI-compatible server;
- ``none`` (no model) and ``self`` (the default model) for a distillation teacher.

Each place is a ``Context`` that accepts some forms; anything else is refused with one line
that says what the place takes. Parsing looks at the file system only to tell a checkpoint
directory from a file; nothing is opened or verified until
``model.checkpoints.checkpoint.resolve_model``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from model.runtime.api import ModelError, ModelNotFoundError

__all__ = [
    "EVALUATION",
    "INFO",
    "LOCAL_KINDS",
    "SERVING",
    "TEACHER",
    "TRAINING_BASE",
    "Context",
    "Kind",
    "ModelSpec",
    "ModelSpecError",
    "parse_model_spec",
]

Kind = Literal[
    "default", "base", "student", "gguf", "checkpoint", "installed", "remote", "none", "self"
]
# The kinds that name a model on this machine (an adapter may go on any of them).
LOCAL_KINDS: frozenset[Kind] = frozenset(
    {"default", "base", "student", "gguf", "checkpoint", "installed", "self"}
)
# Words that are never a file or an installed name (any case).
KEYWORDS: dict[str, Kind] = {
    "default": "default",
    "base": "base",
    "student": "student",
    "none": "none",
    "self": "self",
}
# How each form is spelled in the message that lists what a place accepts, in this order.
_SPELLED: dict[str, str] = {
    "gguf": "a GGUF file",
    "adapter": "MODEL+ADAPTER.gguf",
    "checkpoint": "a checkpoint directory",
    "installed": "an installed NAME[@VERSION]",
    "base": "base",
    "student": "student",
    "default": "default (or nothing)",
    "remote": "http(s)://host[:port][/v1][#model-id]",
    "none": "none",
    "self": "self",
}
# What a refused form is, as the refusal names it.
_IS: dict[str, str] = {
    "remote": "a server URL",
    "none": "'none' (no model)",
    "self": "'self' (a teacher's name for the default model)",
    "adapter": "a model with an adapter",
}


class ModelSpecError(ModelError, ValueError):
    """A model named in a form that the place naming it does not take."""


@dataclass(frozen=True)
class Context:
    """A place that names a model: what it is called in messages, and the forms it takes.

    ``adapter_refusal`` is the reason ``MODEL+ADAPTER`` (and a resolved model that carries
    adapters) is refused there; None when adapters are fine. ``hint`` follows a refused URL.
    """

    where: str
    kinds: frozenset[Kind]
    adapter_refusal: str | None = None
    hint: str = ""  # where a server goes instead, when this place takes no URL

    def accepted(self) -> str:
        """The forms this place takes, as one phrase."""
        forms = [
            spelled
            for form, spelled in _SPELLED.items()
            if form in self.kinds or (form == "adapter" and self.adapter_refusal is None)
        ]
        return ", ".join(forms[:-1]) + f" or {forms[-1]}" if len(forms) > 1 else forms[0]

    def refuse(self, shown: str, what: str, reason: str = "") -> ModelSpecError:
        """The one-line refusal of ``shown`` (which is ``what``) here."""
        why = reason or f"{self.where} takes {self.accepted()}"
        return ModelSpecError(f"{shown!r}: {what} is not accepted by {self.where}; {why}")


SERVING = Context(
    "model.path / --model",
    LOCAL_KINDS - {"self"},
    hint="a server goes in model.remoteUrl (--remote on the command line)",
)
EVALUATION = Context("eval --model", (LOCAL_KINDS - {"self"}) | {"remote"})
TEACHER = Context("--teacher", LOCAL_KINDS | {"remote", "none"})
# A tuned model (a checkpoint with an adapter, MODEL+ADAPTER.gguf) is continued from its adapter.
TRAINING_BASE = Context("--base", LOCAL_KINDS - {"self"})
INFO = Context("model info", LOCAL_KINDS - {"self"})


@dataclass(frozen=True)
class ModelSpec:
    """What a model spec says, parsed; ``kind`` decides which other fields are set.

    ``text`` is the model part as written (without ``+ADAPTER``); ``path`` is set for a GGUF
    file and a checkpoint directory, ``name`` and ``version`` for an installed checkpoint,
    ``url`` (without ``#model-id``) and ``remote_model`` for a server.
    """

    kind: Kind
    text: str = ""
    path: Path | None = None
    name: str | None = None
    version: str | None = None
    adapter: str | None = None
    url: str | None = None
    remote_model: str | None = None

    @property
    def local(self) -> bool:
        """Whether this names a model on this machine (not a server, not ``none``)."""
        return self.kind in LOCAL_KINDS

    @property
    def shown(self) -> str:
        """The spec as messages and records show it (a URL's user and password left out)."""
        if self.kind == "remote" and self.url is not None:
            fragment = f"#{self.remote_model}" if self.remote_model else ""
            return _without_userinfo(self.url) + fragment
        return self.text + (f"+{self.adapter}" if self.adapter else "")


def parse_model_spec(text: str | None, *, allow: Context = SERVING) -> ModelSpec:
    """The model ``text`` names, if ``allow`` takes that form; ModelSpecError otherwise.

    An unusable URL or ``NAME@VERSION`` is refused here too; a file that does not exist is
    left for the resolver to report.
    """
    text = (text or "").strip()
    if text.lower().startswith(("http://", "https://")):
        spec = _remote(text, allow)
    else:
        spec = _local(text, allow)
    if spec.kind not in allow.kinds:
        hinted = allow.hint and spec.kind == "remote"
        reason = f"{allow.hint}; {allow.where} takes {allow.accepted()}" if hinted else ""
        raise allow.refuse(spec.shown, _IS.get(spec.kind, spec.kind), reason)
    return spec


def _remote(text: str, allow: Context) -> ModelSpec:
    url, _, model_id = text.partition("#")
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # not a number, or out of range
        port_ok = False
    if not parts.hostname or not port_ok:
        shown = _without_userinfo(url)
        raise ModelSpecError(
            f"{shown!r}: not a server URL of the form http(s)://host[:port][/v1][#model-id] "
            f"({allow.where})"
        )
    return ModelSpec("remote", text=url, url=url, remote_model=model_id or None)


def _local(text: str, allow: Context) -> ModelSpec:
    """A model on this machine, with ``+ADAPTER`` split off unless the whole is a file."""
    model, plus, adapter = text.rpartition("+")
    if not plus or not adapter or Path(text).expanduser().exists():
        model, adapter = text, ""
    if adapter and not model:
        raise ModelSpecError(
            f"{text!r}: an adapter needs a model to go on ({allow.where} takes "
            "MODEL+ADAPTER.gguf; default+ADAPTER.gguf for the default model)"
        )
    spec = _model(model)
    if adapter:
        if not spec.local:
            raise allow.refuse(text, f"an adapter on {_IS.get(spec.kind, spec.kind)}")
        if allow.adapter_refusal is not None:
            raise allow.refuse(text, _IS["adapter"], allow.adapter_refusal)
        return ModelSpec(spec.kind, spec.text, spec.path, spec.name, spec.version, adapter=adapter)
    return spec


def _model(text: str) -> ModelSpec:
    """A model without an adapter: a keyword, a directory, a file or an installed name."""
    if not text:
        return ModelSpec("default")
    keyword = KEYWORDS.get(text.lower())
    if keyword is not None:
        return ModelSpec(keyword, text=text)
    path = Path(text).expanduser()
    if path.is_dir():
        return ModelSpec("checkpoint", text=text, path=path)
    if path.exists() or not looks_like_name(text):
        return ModelSpec("gguf", text=text, path=path)
    from model.checkpoints.install import split_spec

    try:
        name, version = split_spec(text)
    except ValueError as error:  # neither a file nor NAME[@VERSION]
        raise ModelNotFoundError(f"model file not found: {path} ({error})") from None
    return ModelSpec("installed", text=text, name=name, version=version)


def looks_like_name(text: str) -> bool:
    """Whether ``text`` could be an installed ``NAME[@VERSION]`` rather than a file path."""
    return "/" not in text and os.sep not in text and not text.endswith(".gguf")


def _without_userinfo(url: str) -> str:
    """``url`` with any ``user:password@`` left out: messages and records never hold it."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
