"""The offline sentence-embedding model, its file checks, and the pluggable embedding functions."""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings as ChromaSettings

from finance.embeddings import (
    DIMENSION,
    MODEL_ID,
    EmbeddingError,
    LocalEmbedder,
    LocalEmbeddingFunction,
    OpenAICompatibleEmbeddingFunction,
    cosine,
    default_tokenizer_path,
    embedding_function,
    local_embedder,
    sha256_file,
)
from finance.settings import ConfigError, load_settings


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return local_embedder()


def test_embeddings_have_384_unit_length_dimensions(embedder: LocalEmbedder) -> None:
    """Each text becomes one float32 row of 384 values with L2 norm 1."""
    vectors = embedder.embed(["Coffee beans for the member kitchen", "Monthly internet bill"])
    assert vectors.shape == (2, DIMENSION)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_embeddings_are_deterministic_and_batch_independent(embedder: LocalEmbedder) -> None:
    """The same text gives the same vector alone, repeated, or padded inside a larger batch."""
    text = "Herman Miller Aeron chair for the private office"
    alone = embedder.embed([text])[0]
    again = embedder.embed([text])[0]
    batch = embedder.embed(["short", text, "a much longer sentence " * 20])[1]
    assert np.array_equal(alone, again)
    assert np.allclose(alone, batch, atol=1e-4)


def test_similar_sentences_score_higher_than_unrelated(embedder: LocalEmbedder) -> None:
    """Paraphrases are closer than unrelated sentences (a sanity check of the whole pipeline)."""
    a, b, c, d = embedder.embed([
        "When does a plan downgrade take effect?",
        "A downgrade applies at the end of the billing period.",
        "The espresso machine in the lounge is broken.",
        "Starbucks latte for a member meeting",
    ])
    assert cosine(a, b) > cosine(a, c) + 0.3
    assert cosine(c, d) > cosine(a, d)


def test_long_texts_are_truncated_at_256_tokens(embedder: LocalEmbedder) -> None:
    """Words past the 256-token window change nothing; long and short texts mix in a batch."""
    long = " ".join(f"rule{i % 50} applies" for i in range(400))
    a, b, short = embedder.embed([long, long + " completely different ending", "rent"])
    assert np.allclose(a, b, atol=1e-5)
    assert np.allclose(short, embedder.embed(["rent"])[0], atol=1e-4)


def test_batches_smaller_than_input_keep_order() -> None:
    """With a batch size of 2, five texts come back in their input order."""
    small = LocalEmbedder(batch_size=2)
    texts = ["rent", "a very long description of a leasehold improvement project", "ink", "",
             "utilities"]
    vectors = small.embed(texts)
    for i, text in enumerate(texts):
        assert np.allclose(vectors[i], local_embedder().embed([text])[0], atol=1e-4)


def test_empty_input_and_bare_string() -> None:
    """No texts gives an empty (0, 384) array; a bare string is refused, not split into letters."""
    assert local_embedder().embed([]).shape == (0, DIMENSION)
    with pytest.raises(TypeError):
        local_embedder().embed("rent")


def test_model_hash_mismatch_is_refused_before_loading() -> None:
    """A model file whose sha256 differs from the pinned one raises a clear EmbeddingError."""
    bad = LocalEmbedder(model_sha256="0" * 64)
    with pytest.raises(EmbeddingError, match="embedding model .* has sha256 .* expected 0{64}"):
        bad.embed(["anything"])


def test_tampered_tokenizer_is_refused(tmp_path: Path) -> None:
    """A tokenizer file changed by one byte fails the hash check and names the file."""
    copy = tmp_path / "tokenizer.json"
    shutil.copy(default_tokenizer_path(), copy)
    copy.write_bytes(copy.read_bytes().replace(b"[UNK]", b"[UNX]", 1))
    with pytest.raises(EmbeddingError, match="embedding tokenizer at .*tokenizer.json"):
        LocalEmbedder(tokenizer_path=copy).embed(["anything"])


def test_missing_model_file_is_reported(tmp_path: Path) -> None:
    """A model path that does not exist gives 'not found', not an onnxruntime traceback."""
    with pytest.raises(EmbeddingError, match="not found"):
        LocalEmbedder(model_path=tmp_path / "model.onnx").embed(["x"])


def test_shipped_tokenizer_matches_documented_hash() -> None:
    """finance/data/README.md states the sha256 the code pins for the tokenizer."""
    readme = (default_tokenizer_path().parent / "README.md").read_text(encoding="utf-8")
    assert sha256_file(default_tokenizer_path()) in readme


def test_local_function_works_as_a_chroma_embedding_function() -> None:
    """Chroma stores and queries with the function; a paraphrase finds its rule first."""
    client = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))
    ef = LocalEmbeddingFunction()
    col = client.get_or_create_collection(f"t-{uuid.uuid4().hex[:10]}", embedding_function=ef)
    col.add(ids=["dunning", "capex"], documents=[
        "Overdue invoices get reminders at 3, 7 and 14 days past due.",
        "Items of $2,500 or more are capitalized to an asset account.",
    ])
    found = col.query(query_texts=["when do we chase late payers"], n_results=1)
    assert found["ids"][0] == ["dunning"]
    rebuilt = LocalEmbeddingFunction.build_from_config(ef.get_config())
    assert isinstance(rebuilt, LocalEmbeddingFunction) and ef.get_config() == {"model": MODEL_ID}
    assert ef.default_space() == "cosine"


def test_factory_builds_local_by_default_and_rejects_unknown_local_model() -> None:
    """No settings means the local model; naming another model without an endpoint is an error."""
    assert isinstance(embedding_function(load_settings()), LocalEmbeddingFunction)
    with pytest.raises(EmbeddingError, match="not available locally"):
        embedding_function(load_settings(DESKBOOKS_EMBEDDING_MODEL="bge-large"))


def test_openai_embeddings_need_an_endpoint() -> None:
    """DESKBOOKS_EMBEDDINGS=openai without OPENAI_BASE_URL or OPENAI_API_KEY fails fast."""
    with pytest.raises(ConfigError, match="DESKBOOKS_EMBEDDINGS=openai needs"):
        load_settings(DESKBOOKS_EMBEDDINGS="openai")


class _StubEmbeddings(BaseHTTPRequestHandler):
    """A local stand-in for POST /v1/embeddings (vectors derived from the text length)."""

    fail = False
    seen: list[dict[str, object]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                "body": body})
        if type(self).fail:
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "boom"}}')
            return
        data = [{"object": "embedding", "index": i,
                 "embedding": [float(len(text)), 1.0, float(i)]}
                for i, text in enumerate(body["input"])]
        data.reverse()  # the client must order by index, not by position
        payload = json.dumps({"object": "list", "data": data, "model": body["model"],
                              "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub_url() -> Iterator[str]:
    _StubEmbeddings.fail = False
    _StubEmbeddings.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubEmbeddings)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/"
    server.shutdown()
    server.server_close()


def test_openai_compatible_function_calls_the_configured_endpoint(stub_url: str) -> None:
    """Settings pick the OpenAI-compatible function; it batches, orders by index, sends the key."""
    settings = load_settings(OPENAI_BASE_URL=stub_url, OPENAI_API_KEY="sk-test-123",
                             DESKBOOKS_LLM_MODEL="m", DESKBOOKS_EMBEDDINGS="openai",
                             DESKBOOKS_EMBEDDING_MODEL="nomic-embed-text")
    ef = embedding_function(settings)
    assert isinstance(ef, OpenAICompatibleEmbeddingFunction)
    ef.batch_size = 2
    vectors = ef(["a", "bbb", "cc"])
    assert [v.tolist() for v in vectors] == [[1.0, 1.0, 0.0], [3.0, 1.0, 1.0], [2.0, 1.0, 0.0]]
    assert [s["body"]["model"] for s in _StubEmbeddings.seen] == ["nomic-embed-text"] * 2
    assert _StubEmbeddings.seen[0]["path"] == "/v1/embeddings"
    assert _StubEmbeddings.seen[0]["auth"] == "Bearer sk-test-123"
    assert "sk-test-123" not in json.dumps(ef.get_config())
    assert ef.key == "oai-nomic-embed-text"


def test_openai_endpoint_failure_is_a_readable_error(stub_url: str) -> None:
    """A 500 from the endpoint becomes EmbeddingError naming the model, without the API key."""
    _StubEmbeddings.fail = True
    ef = OpenAICompatibleEmbeddingFunction("emb-1", base_url=stub_url, api_key="sk-secret",
                                           max_retries=0)
    with pytest.raises(EmbeddingError, match="'emb-1'") as info:
        ef(["x"])
    assert "sk-secret" not in str(info.value)
