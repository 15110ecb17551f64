"""The on-disk embedding cache, driven by the real MiniLM encoder behind a thin call-counting wrapper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kgdistill.llm import EmbeddingCache, Encoder, LLMError, encode_cached

TEXTS = [f"entity {i}: a short description of thing number {i}" for i in range(20)]


class Boom(RuntimeError):
    pass


def test_miss_then_hit(tmp_path: Path, st_encoder: Encoder, counting: type) -> None:
    enc = counting(st_encoder)
    first = encode_cached(enc, TEXTS, tmp_path, batch_size=8, progress=False)
    assert isinstance(first, torch.Tensor) and first.dtype == torch.float32
    assert first.shape == (20, 384)
    assert enc.calls == 3 and len(enc.texts) == 20
    np.testing.assert_allclose(first.numpy(), st_encoder.encode(TEXTS), atol=1e-5)

    again = counting(st_encoder)
    second = encode_cached(again, TEXTS, tmp_path, progress=False)
    assert again.calls == 0
    assert torch.equal(first, second)
    cache = EmbeddingCache(tmp_path, st_encoder.key)
    assert len(cache) == 20 and cache.num_shards == 3 and cache.dim == 384
    assert TEXTS[0] in cache and "something else" not in cache


def test_resume_after_crash(tmp_path: Path, st_encoder: Encoder, counting: type) -> None:
    def crash_on_third(n: int) -> None:
        if n == 3:
            raise Boom("killed mid-run")

    enc = counting(st_encoder, before_call=crash_on_third)
    with pytest.raises(Boom):
        encode_cached(enc, TEXTS, tmp_path, batch_size=6, progress=False)
    assert enc.calls == 2
    cache = EmbeddingCache(tmp_path, st_encoder.key)
    assert len(cache) == 12 and cache.num_shards == 2  # both finished batches are on disk
    assert not list(cache.folder.glob(".*tmp"))  # no temporary files left behind

    rerun = counting(st_encoder)
    out = encode_cached(rerun, TEXTS, tmp_path, batch_size=6, progress=False)
    assert rerun.texts == TEXTS[12:]  # only what was missing
    np.testing.assert_allclose(out.numpy(), st_encoder.encode(TEXTS), atol=1e-5)


def test_dedup_and_order(tmp_path: Path, st_encoder: Encoder, counting: type) -> None:
    enc = counting(st_encoder)
    encode_cached(enc, TEXTS[:3], tmp_path, progress=False)
    texts = [TEXTS[5], TEXTS[1], TEXTS[5], TEXTS[0], TEXTS[7], TEXTS[1]]
    out = encode_cached(enc, texts, tmp_path, progress=False)
    assert enc.texts == [
        *TEXTS[:3],
        TEXTS[5],
        TEXTS[7],
    ]  # each text encoded once, cached ones skipped
    assert out.shape == (6, 384)
    np.testing.assert_allclose(out.numpy(), st_encoder.encode(texts), atol=1e-5)
    assert torch.equal(out[0], out[2]) and torch.equal(out[1], out[5])


def test_keys_do_not_collide(tmp_path: Path, st_encoder: Encoder, counting: type) -> None:
    a = counting(st_encoder, key="model-a")
    b = counting(st_encoder, key="model-b")
    encode_cached(a, TEXTS[:4], tmp_path)  # with the progress bar
    encode_cached(b, TEXTS[:4], tmp_path, progress=False)
    assert a.calls == 1 and b.calls == 1  # b found nothing of a's
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert len(folders) == 2
    assert len(EmbeddingCache(tmp_path, "model-a")) == 4


def test_blank_text_refused(tmp_path: Path, st_encoder: Encoder) -> None:
    with pytest.raises(LLMError, match="text 1 is empty"):
        encode_cached(st_encoder, ["ok", " "], tmp_path, progress=False)
    assert encode_cached(st_encoder, [], tmp_path, progress=False).shape == (0, 384)


def test_corrupt_shard_is_quarantined_and_reencoded(
    tmp_path: Path, st_encoder: Encoder, counting: type
) -> None:
    enc = counting(st_encoder)
    encode_cached(enc, TEXTS[:8], tmp_path, batch_size=4, progress=False)
    shard = sorted(EmbeddingCache(tmp_path, st_encoder.key).folder.glob("shard-*"))[1]
    shard.write_bytes(shard.read_bytes()[:-100])  # truncated, as by a full disk

    rerun = counting(st_encoder)
    with pytest.warns(UserWarning, match=f"{shard.name}.*unreadable embedding-cache shard"):
        out = encode_cached(rerun, TEXTS[:8], tmp_path, progress=False)
    assert rerun.texts == TEXTS[4:8]
    assert Path(f"{shard}.corrupt").is_file() and not shard.exists()
    np.testing.assert_allclose(out.numpy(), st_encoder.encode(TEXTS[:8]), atol=1e-5)


def test_wrong_size_from_encoder(tmp_path: Path, st_encoder: Encoder) -> None:
    encode_cached(st_encoder, TEXTS[:2], tmp_path, progress=False)

    class Short:
        key = st_encoder.key
        dim = 8

        def encode(self, texts: list[str]) -> np.ndarray:
            return np.ones((len(texts), 8), dtype=np.float32)

    with pytest.raises(LLMError, match="8-d vectors, the cache holds 384-d"):
        encode_cached(Short(), TEXTS[2:4], tmp_path, progress=False)


def test_compaction(tmp_path: Path, st_encoder: Encoder, counting: type) -> None:
    out = encode_cached(st_encoder, TEXTS, tmp_path, batch_size=2, progress=False, max_shards=4)
    cache = EmbeddingCache(tmp_path, st_encoder.key)
    assert cache.num_shards == 1 and len(cache) == 20
    enc = counting(st_encoder)
    assert torch.equal(encode_cached(enc, TEXTS, tmp_path, progress=False), out)
    assert enc.calls == 0
