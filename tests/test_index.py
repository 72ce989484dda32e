"""RepositoryIndex end to end on small repositories, with the fake embedder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from indexer.embed import FakeEmbedder
from indexer.index import IndexSettings, RepositoryIndex
from indexer.retrieval import Retriever

SAMPLE = Path(__file__).resolve().parent / "data" / "sample_repo"


class CountingEmbedder(FakeEmbedder):
    """The fake embedder, counting the texts it is asked to embed."""

    def __init__(self) -> None:
        super().__init__()
        self.embedded: list[str] = []

    def embed(self, texts):  # type: ignore[no-untyped-def]
        self.embedded.extend(texts)
        return super().embed(texts)


def git_repo(path: Path) -> Path:
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    subprocess.run(["cp", "-r", str(SAMPLE), str(root)], check=True)
    (root / ".gitignore").write_text("build/\n*.log\n")
    (root / "build").mkdir()
    (root / "build" / "generated.py").write_text("def built():\n    return 1\n")
    (root / "debug.log").write_text("log line\n")
    key = "AKIA" + "ABCDEFGHIJKLMNOP"
    (root / "shop" / "deploy.py").write_text(f'AWS_KEY = "{key}"\n')
    (root / ".env").write_text("PASSWORD=hunter2hunter2\n")
    return git_repo(root)


def open_index(repo: Path, tmp_path: Path, embedder: FakeEmbedder | None = None) -> RepositoryIndex:
    settings = IndexSettings(location=tmp_path / "index")
    return RepositoryIndex(repo, settings, embedder=embedder or FakeEmbedder())


def test_update_indexes_code_and_skips_secrets_and_ignored(repo: Path, tmp_path: Path) -> None:
    with open_index(repo, tmp_path) as index:
        report = index.update()
        paths = set(index.store.file_states())
        deploy = "".join(chunk.text for _, chunk in index.store.chunks_of("shop/deploy.py"))
    assert "shop/cart.py" in paths and "shop/config.py" in paths
    assert not {".env", "build/generated.py", "debug.log"} & paths
    # A file holding a secret is indexed with the secret redacted (tests/test_secrets.py).
    assert deploy.strip() == 'AWS_KEY = "<redacted:aws-access-key>"'
    assert report.files == len(paths)
    assert report.chunks > 0 and report.symbols > 0


def test_search_finds_the_definition(repo: Path, tmp_path: Path) -> None:
    with open_index(repo, tmp_path) as index:
        index.update()
        index.embed_pending()
        hits = index.search("remove every line with this SKU from the cart", 3)
    lines = (repo / "shop" / "cart.py").read_text().split("\n")
    remove_line = 1 + lines.index("    def remove(self, sku: str) -> None:")
    assert any(
        hit.chunk.path == "shop/cart.py"
        and hit.chunk.start_line <= remove_line <= hit.chunk.end_line
        for hit in hits
    ), hits


def test_unchanged_repository_embeds_nothing_and_one_change_only_its_chunks(
    repo: Path, tmp_path: Path
) -> None:
    embedder = CountingEmbedder()
    with open_index(repo, tmp_path, embedder) as index:
        index.update()
        first, _ = index.embed_pending()
        assert first > 0
        embedder.embedded.clear()
        report = index.update()
        assert (report.added, report.changed, report.deleted) == (0, 0, 0)
        assert index.embed_pending()[0] == 0
        assert embedder.embedded == []
        cart = repo / "shop" / "cart.py"
        cart.write_text(cart.read_text().replace("Sum of all subtotals.", "Sum of every subtotal."))
        report = index.update()
        assert report.changed == 1
        embedded, _ = index.embed_pending()
    # Only the edited chunk changed text; every other chunk of cart.py kept its vector.
    assert embedded == 1
    assert len(embedder.embedded) == 1 and "Sum of every subtotal." in embedder.embedded[0]


def test_deleted_file_leaves_the_index(repo: Path, tmp_path: Path) -> None:
    with open_index(repo, tmp_path) as index:
        index.update()
        (repo / "shop" / "discounts.py").unlink()
        report = index.update()
        assert report.deleted == 1
        assert all(h.chunk.path != "shop/discounts.py" for h in index.search("bulk discount", 10))


def test_update_file_from_memory(repo: Path, tmp_path: Path) -> None:
    with open_index(repo, tmp_path) as index:
        index.update()
        text = (
            repo / "shop" / "cart.py"
        ).read_text() + "\n\ndef checkout_total(cart):\n    return cart.total()\n"
        assert index.update_file("shop/cart.py", text)
        retriever = Retriever(index)
        assert retriever.lookup("shop.cart.checkout_total").found


def test_known_symbols(repo: Path, tmp_path: Path) -> None:
    with open_index(repo, tmp_path) as index:
        index.update()
        lookup = Retriever(index).lookup
        assert lookup("shop.cart.Cart").found  # class
        assert lookup("shop.cart.Cart.add").found  # method
        assert lookup("Cart.total").found  # Class.method by short class name
        assert lookup("shop.discounts.percent_off").found  # function
        assert lookup("shop.config.DEFAULT_PATH").found  # module attribute
        assert lookup("shop.discounts.Cart").found  # a name the module imports
        assert lookup("shop.cart").found  # module
        assert lookup("percent_off").found  # bare name
        assert not lookup("shop.cart.Cart.checkout").found
        assert not lookup("shop.discounts.no_such_rule").found
        assert not lookup("Cart.no_such_method").found
        assert not lookup("no_such_name_anywhere").found


def test_context_for_resolves_imports_and_skips_the_current_file(
    repo: Path, tmp_path: Path
) -> None:
    with open_index(repo, tmp_path) as index:
        index.update()
        text = (
            "from shop.cart import Cart\n\n\ndef checkout(cart: Cart) -> float:\n    return cart."
        )
        snippets = Retriever(index).context_for("shop/checkout.py", text, len(text))
    assert snippets and snippets[0].reason == "definition"
    assert snippets[0].path == "shop/cart.py" and "class Cart" in snippets[0].text
    assert all(s.path != "shop/checkout.py" for s in snippets)
