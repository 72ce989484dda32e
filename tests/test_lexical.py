"""Lexical retrieval: identifier splitting, stemming, incremental BM25 and rank fusion."""

from __future__ import annotations

import ast
import importlib.util
import math
import random
from pathlib import Path

import bm25s
import pytest

from indexer.lexical import (
    LexicalIndex,
    code_tokens,
    document_terms,
    reciprocal_rank_fusion,
    split_identifier,
    stem,
)


@pytest.mark.parametrize(
    ("word", "parts"),
    [
        ("parseHTTPResponse2", ["parse", "http", "response", "2"]),
        ("parse_http_response", ["parse", "http", "response"]),
        ("camelCase", ["camel", "case"]),
        ("PascalCase", ["pascal", "case"]),
        ("SCREAMING_CASE", ["screaming", "case"]),
        ("HTTPServer", ["http", "server"]),
        ("IOError", ["io", "error"]),
        ("HTML5Parser", ["html", "5", "parser"]),
        ("getHTTP2Client", ["get", "http", "2", "client"]),
        ("utf8Decode", ["utf", "8", "decode"]),
        ("sha256", ["sha", "256"]),
        ("__init__", ["init"]),
        ("_private_name", ["private", "name"]),
        ("getX", ["get", "x"]),
        ("URLs", ["urls"]),
        ("parseURLsFast", ["parse", "urls", "fast"]),
        ("lowercase", ["lowercase"]),
        ("MAX", ["max"]),
        ("snake_case_2x", ["snake", "case", "2", "x"]),
        ("kebab-case", ["kebab", "case"]),
        ("größe_berechnen", ["größe", "berechnen"]),
        ("x", ["x"]),
        ("", []),
        ("___", []),
    ],
)
def test_split_identifier(word: str, parts: list[str]) -> None:
    assert split_identifier(word) == parts


@pytest.mark.parametrize(
    "family",
    [
        ["parse", "parses", "parsed", "parsing"],
        ["copy", "copies", "copied", "copying"],
        ["wrap", "wraps", "wrapped", "wrapping"],
        ["file", "files", "filed"],
        ["embed", "embeds", "embedded", "embedding"],
        ["add", "adds", "added", "adding"],
        ["fill", "fills", "filled", "filling"],
        ["pass", "passes", "passed", "passing"],
        ["match", "matches", "matched", "matching"],
        ["index", "indexes", "indexed", "indexing"],
        ["string", "strings"],
        ["entry", "entries"],
        ["speed", "speeds"],
    ],
)
def test_stem_merges_a_word_family(family: list[str]) -> None:
    assert len({stem(word) for word in family}) == 1, {word: stem(word) for word in family}


@pytest.mark.parametrize("word", ["status", "class", "analysis", "is", "a", "x2", "http"])
def test_stem_leaves_non_inflected_words(word: str) -> None:
    assert stem(word) == word


def test_stemming_is_symmetric_between_text_and_query() -> None:
    doc = set(code_tokens("def copy_files(paths):\n    '''Copies the files, preserving modes.'''"))
    for query in ("copy file", "copying files", "copied a file", "preserve mode"):
        assert set(code_tokens(query)) <= doc, query


def test_code_tokens_keep_whole_identifier_and_parts() -> None:
    tokens = code_tokens("def parseHTTPResponse(self, data): return None")
    assert set(code_tokens("http response")) <= set(tokens)
    assert set(code_tokens("parse_http_response")) <= set(tokens)
    assert "self" not in tokens
    assert "return" not in tokens
    assert all(len(token) > 1 for token in tokens)


def test_code_tokens_drop_stop_words_but_keep_compounds() -> None:
    assert code_tokens("if x is not None: return self") == []
    assert code_tokens("the a of in for") == []
    tokens = code_tokens("is_file")
    assert "file" in {stem(t) for t in tokens} or stem("file") in tokens
    assert "is" not in tokens
    assert stem("is") + stem("file") in tokens


def test_document_terms_weight_symbol_and_add_path_once() -> None:
    counts = document_terms("pass", symbol="shop.cart.checkout", path="shop/cart.py")
    assert counts[stem("checkout")] == 3
    assert counts["shop"] == 2  # once from the symbol's scope, once from the path
    assert counts["cart"] == 2
    assert "py" not in counts


def _bm25(tf: int, df: int, n_docs: int, dl: int, avgdl: float) -> float:
    idf = math.log(1 + (n_docs - df + 0.5) / (df + 0.5))
    return idf * tf * 2.2 / (tf + 1.2 * (1 - 0.75 + 0.75 * dl / avgdl))


def test_bm25_matches_hand_computation() -> None:
    index = LexicalIndex()
    index.add(1, "kiwi plum")
    index.add(2, "kiwi mango mango")
    index.add(3, "lemon")
    assert index.average_length == 2.0
    # mango: df 1 of 3 docs; doc 2 has tf 2 and length 3.
    mango = index.search("mango")
    assert [cid for cid, _ in mango] == [2]
    assert mango[0][1] == pytest.approx(math.log(8 / 3) * 4.4 / 3.65)
    assert mango[0][1] == pytest.approx(_bm25(2, 1, 3, 3, 2.0))
    kiwi = dict(index.search("kiwi"))
    assert kiwi[1] == pytest.approx(math.log(1.6))  # the shorter document wins
    assert kiwi[2] == pytest.approx(math.log(1.6) * 2.2 / 2.65)
    both = dict(index.search("kiwi mango"))
    assert both[2] == pytest.approx(_bm25(1, 2, 3, 3, 2.0) + _bm25(2, 1, 3, 3, 2.0))


WORDS = [
    *("alpha", "beta", "gamma", "delta", "omega", "kiwi", "mango", "lemon", "plum", "cherry"),
    *("parseValue", "readFile", "write_buffer", "HTTPClient", "socket_timeout", "retryCount"),
]


def _random_corpus(rng: random.Random, n: int) -> dict[int, tuple[str, str, str]]:
    corpus = {}
    for cid in rng.sample(range(10 * n), n):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30)))
        symbol = rng.choice(["", "mod.parseValue", "mod.Cls.readFile", "lemon"])
        path = rng.choice(["a.py", "pkg/b.py", "pkg/c.py"])
        corpus[cid] = (text, symbol, path)
    return corpus


def test_bm25_agrees_with_bm25s() -> None:
    rng = random.Random(3)
    corpus = _random_corpus(rng, 60)
    index = LexicalIndex()
    index.add_many((cid, text, "", "") for cid, (text, _, _) in corpus.items())
    ids = list(corpus)
    # bm25s's "lucene" method is Lucene's modern BM25: the same idf, without the constant
    # (k1 + 1) factor of the Okapi numerator that this index keeps.
    reference = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    reference.index([code_tokens(corpus[cid][0]) for cid in ids], show_progress=False)
    for query in ("kiwi", "parse value", "http client socket", "omega delta lemon plum"):
        expected = reference.get_scores(sorted(set(code_tokens(query)))) * 2.2
        got = dict(index.search(query, k=len(ids)))
        for row, cid in enumerate(ids):
            assert got.get(cid, 0.0) == pytest.approx(float(expected[row]), rel=1e-5), (query, cid)


QUERIES = ("kiwi", "parse value", "read file", "http client timeout", "lemon plum omega", "pkg")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_incremental_changes_equal_a_fresh_build(seed: int) -> None:
    rng = random.Random(seed)
    corpus = _random_corpus(rng, 80)
    index = LexicalIndex()
    index.add_many((cid, *row) for cid, row in corpus.items())
    live = dict(corpus)
    for _ in range(120):
        action = rng.random()
        if action < 0.35 and live:
            cid = rng.choice(sorted(live))
            assert index.remove(cid)
            del live[cid]
        elif action < 0.7 and live:
            cid = rng.choice(sorted(live))
            row = _random_corpus(rng, 1).popitem()[1]
            index.update(cid, row[0], symbol=row[1], path=row[2])
            live[cid] = row
        else:
            cid = max(live, default=0) + rng.randint(1, 5)
            row = _random_corpus(rng, 1).popitem()[1]
            index.add(cid, row[0], symbol=row[1], path=row[2])
            live[cid] = row
    fresh = LexicalIndex()
    fresh.add_many((cid, *row) for cid, row in live.items())
    assert len(index) == len(fresh) == len(live)
    assert index.average_length == fresh.average_length
    for query in QUERIES:
        assert index.search(query, k=1000) == fresh.search(query, k=1000), query
        assert index.search(query, k=3) == fresh.search(query, k=3), query


def test_remove_everything_leaves_an_empty_index() -> None:
    index = LexicalIndex()
    index.add_many([(1, "kiwi", "", "a.py"), (2, "mango", "", "a.py"), (3, "kiwi", "", "b.py")])
    assert index.remove_path("a.py") == [1, 2]
    assert index.ids_for_path("a.py") == []
    assert [cid for cid, _ in index.search("kiwi mango")] == [3]
    assert index.remove(3)
    assert not index.remove(3)
    assert len(index) == 0
    assert index.average_length == 0.0
    assert index.search("kiwi") == []


def test_add_rejects_a_duplicate_id_and_update_replaces() -> None:
    index = LexicalIndex()
    index.add(1, "kiwi")
    with pytest.raises(ValueError):
        index.add(1, "mango")
    with pytest.raises(ValueError):
        index.add_many([(2, "plum", "", ""), (2, "lemon", "", "")])
    assert len(index) == 1
    index.update(1, "mango")
    assert index.search("kiwi") == []
    assert [cid for cid, _ in index.search("mango")] == [1]
    index.update(5, "lemon")  # update of an absent id adds it
    assert 5 in index


def test_exclude_path_drops_the_current_file() -> None:
    index = LexicalIndex()
    index.add(1, "def retry(): timeout backoff", path="net/client.py")
    index.add(2, "def retry_later(): timeout", path="net/server.py")
    index.add(3, "timeout backoff backoff", path="net/client.py")
    assert {cid for cid, _ in index.search("timeout backoff")} == {1, 2, 3}
    assert [cid for cid, _ in index.search("timeout backoff", exclude_path="net/client.py")] == [2]
    assert len(index.search("timeout backoff", exclude_path="elsewhere.py")) == 3


def test_symbol_boost_ranks_the_defining_chunk_first() -> None:
    definition = "def load_config(path):\n    data = read(path)\n    return parse(data)"
    caller = (
        "def main():\n    cfg = load_config(ARGS)\n    other = load_config(DEFAULTS)\n"
        "    merged = load_config(USER) or load_config(SITE)\n    run(cfg, other, merged)"
    )
    filler = [
        (10 + i, f"def helper{i}(): return compute{i}(value)", f"helper{i}", "h.py")
        for i in range(8)
    ]

    plain = LexicalIndex()
    plain.add_many([(1, definition, "", "app/config.py"), (2, caller, "", "app/main.py"), *filler])
    assert plain.search("load_config")[0][0] == 2  # without the boost the caller wins

    boosted = LexicalIndex()
    boosted.add_many(
        [
            (1, definition, "app.config.load_config", "app/config.py"),
            (2, caller, "app.main.main", "app/main.py"),
            *filler,
        ]
    )
    assert boosted.search("load_config")[0][0] == 1
    assert boosted.search("load config")[0][0] == 1
    assert boosted.search("loadConfig")[0][0] == 1


def test_empty_index_query_and_stop_word_query_return_nothing() -> None:
    assert LexicalIndex().search("anything at all") == []
    index = LexicalIndex()
    index.add(1, "if the value is None: return self")
    assert index.search("") == []
    assert index.search("   \n") == []
    assert index.search("if the is none return self") == []
    assert index.search("value", k=0) == []
    assert index.search("unknown words only") == []
    assert [cid for cid, _ in index.search("value")] == [1]


def test_search_returns_top_k_with_ties_broken_by_lower_id() -> None:
    index = LexicalIndex()
    index.add_many([(cid, "kiwi", "", "") for cid in (7, 3, 9, 1)] + [(2, "mango", "", "")])
    result = index.search("kiwi", k=3)
    assert [cid for cid, _ in result] == [1, 3, 7]
    assert len({score for _, score in result}) == 1


def test_rrf_golden() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1]])
    assert [cid for cid, _ in fused] == [1, 3, 2]
    assert dict(fused) == pytest.approx({1: 1 / 61 + 1 / 62, 3: 1 / 63 + 1 / 61, 2: 1 / 62})


def test_rrf_ids_in_one_ranking_only_and_custom_k() -> None:
    fused = dict(reciprocal_rank_fusion([[5, 6], [7]], k=1))
    assert fused == pytest.approx({5: 1 / 2 + 0, 6: 1 / 3, 7: 1 / 2})


def test_rrf_ties_keep_first_appearance() -> None:
    assert [cid for cid, _ in reciprocal_rank_fusion([[1, 2], [2, 1]])] == [1, 2]
    assert [cid for cid, _ in reciprocal_rank_fusion([[2, 1], [1, 2]])] == [2, 1]
    assert [cid for cid, _ in reciprocal_rank_fusion([[9], [4]])] == [9, 4]


def test_rrf_weights() -> None:
    fused = reciprocal_rank_fusion([[1, 2], [2, 1]], weights=[1.0, 2.0])
    assert [cid for cid, _ in fused] == [2, 1]
    assert dict(fused) == pytest.approx({2: 1 / 62 + 2 / 61, 1: 1 / 61 + 2 / 62})
    assert reciprocal_rank_fusion([[1, 2], [3]], weights=[1.0, 0.0])[-1] == (3, 0.0)
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([[1], [2]], weights=[1.0])


def test_rrf_edge_cases() -> None:
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []
    # A repeated id counts once, at its best rank.
    assert dict(reciprocal_rank_fusion([[4, 4, 5]])) == pytest.approx({4: 1 / 61, 5: 1 / 63})
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([[1]], k=-1)


# Description queries over real stdlib modules, each with the functions that answer it.
QUALITY_QUERIES: dict[str, set[str]] = {
    "copy a file with its permission bits": {"copy", "copy2", "copymode"},
    "wrap text to a width": {"wrap", "fill", "TextWrapper.wrap"},
    "remove a directory tree recursively": {"rmtree", "_rmtree_unsafe", "_rmtree_safe_fd"},
    "find an executable program on the PATH": {"which"},
    "remove common leading whitespace from every line": {"dedent"},
    "add a prefix to the beginning of lines": {"indent"},
    "total used and free disk space": {"disk_usage"},
    "create a zip or tar archive file": {"make_archive", "_make_zipfile", "_make_tarball"},
    "size of the terminal window columns and lines": {"get_terminal_size"},
    "decode a JSON document from a string": {"JSONDecoder.decode", "JSONDecoder.raw_decode"},
    "truncate text to fit with a placeholder": {"shorten", "TextWrapper._wrap_chunks"},
    "recursively move a file or directory to another location": {"move"},
}


def _function_chunks(module: str) -> list[tuple[str, str, str]]:
    """``(qualname, source, path)`` for every function and method of a stdlib module."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin).read_text(encoding="utf-8")
    path = module.replace(".", "/") + ".py"
    chunks: list[tuple[str, str, str]] = []

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                text = ast.get_source_segment(source, child) or ""
                chunks.append((f"{scope}{child.name}", text, path))
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{scope}{child.name}.")
            else:  # definitions under ``if``/``try`` (shutil's platform variants)
                visit(child, scope)

    visit(ast.parse(source), "")
    return chunks


def test_description_queries_find_real_stdlib_functions() -> None:
    chunks = [c for m in ("json.decoder", "textwrap", "shutil") for c in _function_chunks(m)]
    assert len(chunks) > 50
    index = LexicalIndex()
    index.add_many(
        (cid, text, f"{path[:-3].replace('/', '.')}.{qualname}", path)
        for cid, (qualname, text, path) in enumerate(chunks)
    )
    hits3 = hits1 = 0
    misses = []
    for query, expected in QUALITY_QUERIES.items():
        top = [chunks[cid][0] for cid, _ in index.search(query, k=3)]
        if expected & set(top):
            hits3 += 1
        else:
            misses.append((query, top))
        hits1 += bool(top) and top[0] in expected
    print(f"hits@3 {hits3}/{len(QUALITY_QUERIES)}, hits@1 {hits1}/{len(QUALITY_QUERIES)}")
    assert hits3 >= len(QUALITY_QUERIES) - 2, misses
