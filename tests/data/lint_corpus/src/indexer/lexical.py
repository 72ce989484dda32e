"""Lexical retrieval: code-aware tokens, incremental BM25 over chunk ids, and rank fusion."""

from __future__ import annotations

import heapq
import logging
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import chain

logger = logging.getLogger(__name__)

K1 = 1.2
B = 0.75
SYMBOL_WEIGHT = 3

# Explicit ASCII classes match half again as fast as \w; non-ASCII runs ride along and
# split_identifier drops any punctuation among them.
_WORD = re.compile(r"[0-9A-Za-z_\u00c0-\U0010ffff]+")
_SEPARATOR = re.compile(r"[\W_]+")
# An acronym ends where a capitalised word begins (HTTPResponse -> HTTP, Response), and a
# plural acronym keeps its s (URLs -> URLs, not UR, Ls).
_CAMEL = re.compile(r"[A-Z]{2,}s(?![a-z])|[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_VOWELS = frozenset("aeiouy")
# Doubled consonants that are part of the word itself (fill, pass, buzz, stuff).
_KEEP_DOUBLE = frozenset("lszf")

# Words that look inflected but are not; stripping them would merge them with unrelated terms.
# fmt: off
_STEM_EXCEPTIONS = frozenset({
    "bed", "embed", "feed", "need", "seed", "shred", "speed", "thread", "during", "nothing",
    "something", "everything", "anything", "ping", "string", "thing", "bring", "ring", "spring",
})
# fmt: on

# Only words that occur in nearly every chunk and so carry no signal but cost query time:
# keywords, builtin type names and English glue words. Domain words (copy, file, get, set,
# open, read, type, name) stay, and compound identifiers keep their whole form
# (``is_file`` -> ``isfile``) even when a part is a stop word.
# fmt: off
STOP_WORDS = frozenset({
    # Python
    "and", "as", "assert", "async", "await", "break", "class", "cls", "continue", "def", "del",
    "elif", "else", "except", "false", "finally", "for", "from", "global", "if", "import", "in",
    "is", "lambda", "none", "nonlocal", "not", "or", "raise", "return", "self", "true",
    "try", "while", "with", "yield", "str", "int", "bool", "float",
    # JavaScript / TypeScript / Java / C / Go / Rust
    "const", "let", "var", "function", "this", "new", "null", "undefined", "typeof", "instanceof",
    "export", "public", "private", "protected", "static", "void", "char", "long", "double",
    "unsigned", "struct", "package", "func", "fn", "mut", "pub", "impl",
    # English
    "an", "the", "of", "to", "on", "at", "by", "be", "are", "was", "were", "been", "it", "its",
    "that", "these", "those", "into", "than", "then", "there", "which", "what", "when", "where",
    "how", "do", "does", "can", "should", "will", "would",
})
# fmt: on


def split_identifier(word: str) -> list[str]:
    """Split an identifier on snake, camel, Pascal and SCREAMING case and digits, lowercased."""
    if word.isascii():
        # The pattern skips underscores and punctuation by itself.
        return list(map(str.lower, _CAMEL.findall(word)))
    parts: list[str] = []
    for piece in _SEPARATOR.split(word):
        if piece.isascii():
            parts.extend(map(str.lower, _CAMEL.findall(piece)))
        elif piece:
            # Case boundaries in other scripts are not worth guessing at; keep the piece whole.
            parts.append(piece.lower())
    return parts


def _undouble(stem: str) -> str:
    if (
        len(stem) >= 4
        and stem[-1] == stem[-2]
        and stem[-1] not in _KEEP_DOUBLE
        and stem[-1] not in _VOWELS
    ):
        return stem[:-1]
    return stem


def _has_vowel(stem: str) -> bool:
    return any(c in _VOWELS for c in stem)


@lru_cache(maxsize=1 << 16)
def stem(term: str) -> str:
    """Strip a plural ``s``, ``ing`` or ``ed`` and a final ``e``, the same for text and query."""
    if len(term) <= 3 or not term.isalpha() or term in _STEM_EXCEPTIONS:
        return term
    if term.endswith(("ies", "ied")) and len(term) > 4:
        term = term[:-3] + "y"
    elif term.endswith(("ss", "us", "is")):
        pass
    elif term.endswith("s"):
        term = term[:-1]
    elif term.endswith("ing") and len(term) >= 6 and _has_vowel(term[:-3]):
        term = _undouble(term[:-3])
    elif term.endswith("ed") and not term.endswith("eed") and len(term) >= 5:
        term = _undouble(term[:-2])
    # A final e is dropped everywhere so that parse, parses, parsed and parsing meet.
    if term.endswith("e") and len(term) > 3:
        term = term[:-1]
    return term


@lru_cache(maxsize=1 << 17)
def _word_terms(word: str) -> tuple[str, ...]:
    """The index terms one word of text contributes (cached: code repeats its words)."""
    # Most words are plain lowercase and need no splitting.
    parts = [word] if word.isalpha() and word.islower() else split_identifier(word)
    if len(parts) == 1:
        part = parts[0]
        stemmed = stem(part)
        return (stemmed,) if _useful(part, stemmed) else ()
    terms: list[str] = []
    stems: list[str] = []
    for part in parts:
        stemmed = stem(part)
        stems.append(stemmed)
        if _useful(part, stemmed):
            terms.append(stemmed)
    terms.append("".join(stems))
    return tuple(terms)


def _useful(part: str, stemmed: str) -> bool:
    return len(stemmed) > 1 and part not in STOP_WORDS and stemmed not in STOP_WORDS


def code_tokens(text: str) -> list[str]:
    """Index terms of code or prose: each identifier's parts plus its whole form, stemmed."""
    # map/chain/lru_cache all run in C, so a repeated word costs one cache hit, not a split.
    return list(chain.from_iterable(map(_word_terms, _WORD.findall(text))))


def _path_text(path: str) -> str:
    # The extension is in nearly every chunk of a repository, so it is left out.
    head, _, last = path.replace("\\", "/").rpartition("/")
    name = last.rsplit(".", 1)[0] if "." in last.lstrip(".") else last
    return f"{head} {name}"


def document_terms(text: str, *, symbol: str = "", path: str = "") -> Counter[str]:
    """Term frequencies of one chunk: text, the defined name weighted up, and the path."""
    terms = code_tokens(text)
    if symbol:
        scope, _, name = symbol.rpartition(".")
        # Queries name the defined function, not the module or class that holds it.
        terms += code_tokens(name) * SYMBOL_WEIGHT
        if scope:
            terms += code_tokens(scope)
    if path:
        terms += code_tokens(_path_text(path))
    return Counter(terms)


class LexicalIndex:
    """Incremental Okapi BM25 over chunk ids; thread-safe.

    The idf is Lucene's, ln(1 + (N - df + 0.5) / (df + 0.5)), which unlike the classic
    form never turns negative for a term in most chunks (common in a small repository).

    Adding or removing a chunk costs time proportional to its distinct terms, so re-indexing
    one saved file touches only that file's chunks. Scores are independent of the order
    chunks were added or removed in.
    """

    def __init__(self, *, k1: float = K1, b: float = B) -> None:
        self.k1 = k1
        self.b = b
        self._postings: dict[str, dict[int, int]] = {}
        self._doc_terms: dict[int, Counter[str]] = {}
        self._doc_len: dict[int, int] = {}
        self._doc_path: dict[int, str] = {}
        self._by_path: dict[str, set[int]] = {}
        self._total_len = 0
        # Per-document length normalisation, rebuilt lazily when the average length moved.
        self._norm: dict[int, float] | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._doc_len)

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._doc_len

    @property
    def average_length(self) -> float:
        """Mean document length in terms (0.0 when empty)."""
        n = len(self._doc_len)
        return self._total_len / n if n else 0.0

    def add(self, chunk_id: int, text: str, *, symbol: str = "", path: str = "") -> None:
        """Index one chunk; ``ValueError`` if the id is already present (use ``update``)."""
        counts = document_terms(text, symbol=symbol, path=path)
        with self._lock:
            if chunk_id in self._doc_len:
                raise ValueError(f"chunk {chunk_id} is already indexed")
            self._insert(chunk_id, counts, path)

    def add_many(self, rows: Iterable[tuple[int, str, str, str]]) -> int:
        """Index ``(chunk_id, text, symbol, path)`` rows in bulk; returns how many were added."""
        started = time.perf_counter()
        prepared = [
            (cid, document_terms(text, symbol=symbol, path=path), path)
            for cid, text, symbol, path in rows
        ]
        with self._lock:
            seen: set[int] = set()
            for cid, _, _ in prepared:
                if cid in self._doc_len or cid in seen:
                    raise ValueError(f"chunk {cid} is already indexed")
                seen.add(cid)
            for cid, counts, path in prepared:
                self._insert(cid, counts, path)
        elapsed = time.perf_counter() - started
        logger.debug("indexed %d chunks in %.0f ms", len(prepared), elapsed * 1000)
        return len(prepared)

    def update(self, chunk_id: int, text: str, *, symbol: str = "", path: str = "") -> None:
        """Replace a chunk's content (or add it when absent)."""
        counts = document_terms(text, symbol=symbol, path=path)
        with self._lock:
            self._delete(chunk_id)
            self._insert(chunk_id, counts, path)

    def remove(self, chunk_id: int) -> bool:
        """Drop a chunk; returns False when it was not indexed."""
        with self._lock:
            return self._delete(chunk_id)

    def remove_path(self, path: str) -> list[int]:
        """Drop every chunk indexed under ``path``; returns their ids, sorted."""
        with self._lock:
            ids = sorted(self._by_path.get(path, ()))
            for cid in ids:
                self._delete(cid)
        return ids

    def ids_for_path(self, path: str) -> list[int]:
        """The ids of the chunks indexed under ``path``, sorted."""
        with self._lock:
            return sorted(self._by_path.get(path, ()))

    def search(
        self, query: str, k: int = 10, *, exclude_path: str | None = None
    ) -> list[tuple[int, float]]:
        """The ``k`` best ``(chunk_id, score)`` for a query, best first; ties by lower id."""
        if k <= 0:
            return []
        terms = sorted(set(code_tokens(query)))
        if not terms:
            return []
        with self._lock:
            n_docs = len(self._doc_len)
            if not n_docs:
                return []
            norm = self._norms()
            k1p1 = self.k1 + 1.0
            scores: dict[int, float] = {}
            get = scores.get
            for term in terms:
                plist = self._postings.get(term)
                if not plist:
                    continue
                df = len(plist)
                idf = math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5)) * k1p1
                for cid, tf in plist.items():
                    scores[cid] = get(cid, 0.0) + idf * tf / (tf + norm[cid])
            if exclude_path is not None:
                for cid in self._by_path.get(exclude_path, ()):
                    scores.pop(cid, None)
        return heapq.nlargest(k, scores.items(), key=lambda item: (item[1], -item[0]))

    def _insert(self, chunk_id: int, counts: Counter[str], path: str) -> None:
        postings = self._postings
        for term, tf in counts.items():
            plist = postings.get(term)
            if plist is None:
                postings[term] = {chunk_id: tf}
            else:
                plist[chunk_id] = tf
        length = sum(counts.values())
        self._doc_terms[chunk_id] = counts
        self._doc_len[chunk_id] = length
        self._doc_path[chunk_id] = path
        self._by_path.setdefault(path, set()).add(chunk_id)
        self._total_len += length
        self._norm = None

    def _delete(self, chunk_id: int) -> bool:
        counts = self._doc_terms.pop(chunk_id, None)
        if counts is None:
            return False
        postings = self._postings
        for term in counts:
            plist = postings[term]
            del plist[chunk_id]
            if not plist:
                del postings[term]
        self._total_len -= self._doc_len.pop(chunk_id)
        path = self._doc_path.pop(chunk_id)
        same_file = self._by_path[path]
        same_file.discard(chunk_id)
        if not same_file:
            del self._by_path[path]
        self._norm = None
        return True

    def _norms(self) -> dict[int, float]:
        # k1 * (1 - b + b * dl / avgdl) per document: O(N) once per change, not per posting.
        if self._norm is None:
            avg = self._total_len / len(self._doc_len) if self._doc_len else 1.0
            avg = avg or 1.0
            k1, b = self.k1, self.b
            self._norm = {
                cid: k1 * (1.0 - b + b * length / avg) for cid, length in self._doc_len.items()
            }
        return self._norm


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]],
    *,
    k: int = 60,
    weights: Sequence[float] | None = None,
) -> list[tuple[int, float]]:
    """Fuse ranked id lists: score = Σ weight / (k + rank), rank 1-based; ties by first seen."""
    if k < 0:
        raise ValueError("k must not be negative")
    if weights is None:
        weights = [1.0] * len(rankings)
    elif len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        seen: set[int] = set()
        for rank, item in enumerate(ranking, start=1):
            # An id repeated within one ranking counts once, at its best rank.
            if item in seen:
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    # sorted() is stable, so equal scores keep the order of first appearance.
    return sorted(scores.items(), key=lambda item: -item[1])
