"""xxh3-64 (seeded) of many short byte strings at once, in NumPy, bit for bit as the `xxhash` package computes it.

MinHash shingling hashes every distinct word of a batch; calling `xxhash.xxh3_64_intdigest` once per word from
Python cost more than the rest of the shingling. Words are short, and XXH3 hashes inputs of up to 128 bytes
with a few fixed formulas (XXH3_len_0to16_64b, XXH3_len_17to128_64b in xxhash.h, BSD-2-Clause, Yann Collet):
here each formula runs over all words of its length class as NumPy uint64 arithmetic. Longer inputs (rare
for words) go through `xxhash` itself. tests/dedup/test_xxh3.py checks equality with `xxhash` on every length
class and on random seeds.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import xxhash

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

# XXH3's default secret (kSecret, 192 bytes; the first 128 are used for inputs up to 128 bytes).
_SECRET = bytes.fromhex(
    "b8fe6c3923a44bbe7c01812cf721ad1cded46de9839097db7240a4a4b7b3671f"
    "cb79e64eccc0e578825ad07dccff7221b8084674f743248ee03590e6813a264c"
    "3c2852bb91c300cb88d0658b1b532ea371644897a20df94e3819ef46a9deacd8"
    "a8fa763fe39c343ff9dcbbc7c70b4f1d8a51e04bcdb45931c89f7ec9d9787364"
)
_PRIME32_1 = 0x9E3779B1
_PRIME64_1 = np.uint64(0x9E3779B185EBCA87)
_PRIME64_2 = np.uint64(0xC2B2AE3D27D4EB4F)
_PRIME64_3 = np.uint64(0x165667B19E3779F9)
_PRIME_MX1 = np.uint64(0x165667919E3779F9)
_PRIME_MX2 = np.uint64(0x9FB21C651E98DF25)
_MASK32 = np.uint64(0xFFFFFFFF)
_MASK64 = (1 << 64) - 1


def _secret64(offset: int) -> int:
    return int.from_bytes(_SECRET[offset : offset + 8], "little")


def _secret32(offset: int) -> int:
    return int.from_bytes(_SECRET[offset : offset + 4], "little")


def _u64(value: int) -> np.uint64:
    return np.uint64(value & _MASK64)


def _read(data: npt.NDArray[np.uint8], at: I64, width: int) -> U64:
    """Little-endian `width`-byte integers starting at byte offsets `at`."""
    columns = data[at[:, None] + np.arange(width)]
    view = np.ascontiguousarray(columns).view("<u8" if width == 8 else "<u4").ravel()
    return view.astype(np.uint64)


def _mul128_fold64(lhs: U64, rhs: U64) -> U64:
    """The 128-bit product of `lhs` and `rhs`, its two halves XORed (XXH3_mul128_fold64)."""
    lhs_lo, lhs_hi = lhs & _MASK32, lhs >> np.uint64(32)
    rhs_lo, rhs_hi = rhs & _MASK32, rhs >> np.uint64(32)
    lo_lo, hi_lo = lhs_lo * rhs_lo, lhs_hi * rhs_lo
    lo_hi, hi_hi = lhs_lo * rhs_hi, lhs_hi * rhs_hi
    cross = (lo_lo >> np.uint64(32)) + (hi_lo & _MASK32) + lo_hi
    upper = (hi_lo >> np.uint64(32)) + (cross >> np.uint64(32)) + hi_hi
    lower = (cross << np.uint64(32)) | (lo_lo & _MASK32)
    result: U64 = np.asarray(np.bitwise_xor(upper, lower), dtype=np.uint64)
    return result


def _avalanche(h: U64) -> U64:
    h = h ^ (h >> np.uint64(37))
    h = h * _PRIME_MX1
    result: U64 = h ^ (h >> np.uint64(32))
    return result


def _xxh64_avalanche(h: U64) -> U64:
    h = h ^ (h >> np.uint64(33))
    h = h * _PRIME64_2
    h = h ^ (h >> np.uint64(29))
    h = h * _PRIME64_3
    result: U64 = h ^ (h >> np.uint64(32))
    return result


def _rotl(x: U64, bits: int) -> U64:
    result: U64 = (x << np.uint64(bits)) | (x >> np.uint64(64 - bits))
    return result


def _len_1to3(data: npt.NDArray[np.uint8], start: I64, length: I64, seed: int) -> U64:
    c1 = data[start].astype(np.uint64)
    c2 = data[start + (length >> 1)].astype(np.uint64)
    c3 = data[start + length - 1].astype(np.uint64)
    combined = (c1 << np.uint64(16)) | (c2 << np.uint64(24)) | c3 | (length.astype(np.uint64) << np.uint64(8))
    bitflip = _u64((_secret32(0) ^ _secret32(4)) + seed)
    return _xxh64_avalanche(combined ^ bitflip)


def _len_4to8(data: npt.NDArray[np.uint8], start: I64, length: I64, seed: int) -> U64:
    swapped = int.from_bytes((seed & 0xFFFFFFFF).to_bytes(4, "little"), "big")
    seed = (seed ^ (swapped << 32)) & _MASK64
    input1 = _read(data, start, 4)
    input2 = _read(data, start + length - 4, 4)
    bitflip = _u64((_secret64(8) ^ _secret64(16)) - seed)
    h = (input2 + (input1 << np.uint64(32))) ^ bitflip
    h = h ^ _rotl(h, 49) ^ _rotl(h, 24)
    h = h * _PRIME_MX2
    h = h ^ ((h >> np.uint64(35)) + length.astype(np.uint64))
    h = h * _PRIME_MX2
    result: U64 = h ^ (h >> np.uint64(28))
    return result


def _len_9to16(data: npt.NDArray[np.uint8], start: I64, length: I64, seed: int) -> U64:
    low = _read(data, start, 8) ^ _u64((_secret64(24) ^ _secret64(32)) + seed)
    high = _read(data, start + length - 8, 8) ^ _u64((_secret64(40) ^ _secret64(48)) - seed)
    acc = length.astype(np.uint64) + low.byteswap() + high + _mul128_fold64(low, high)
    return _avalanche(acc)


def _mix16(data: npt.NDArray[np.uint8], at: I64, secret: int, seed: int) -> U64:
    lhs = _read(data, at, 8) ^ _u64(_secret64(secret) + seed)
    rhs = _read(data, at + 8, 8) ^ _u64(_secret64(secret + 8) - seed)
    return _mul128_fold64(lhs, rhs)


def _len_17to128(data: npt.NDArray[np.uint8], start: I64, length: I64, seed: int) -> U64:
    acc = length.astype(np.uint64) * _PRIME64_1
    end = start + length
    for step, threshold in enumerate((0, 32, 64, 96)):
        rows = np.flatnonzero(length > threshold)
        if len(rows) == 0:
            break
        head = _mix16(data, start[rows] + 16 * step, 32 * step, seed)
        tail = _mix16(data, end[rows] - 16 * (step + 1), 32 * step + 16, seed)
        acc[rows] += head + tail
    return _avalanche(acc)


def _empty(seed: int) -> np.uint64:
    h = np.array([(seed ^ _secret64(56) ^ _secret64(64)) & _MASK64], dtype=np.uint64)
    return np.uint64(_xxh64_avalanche(h)[0])


def xxh3_64(strings: pa.Array | pa.ChunkedArray, seed: int) -> U64:
    """`xxhash.xxh3_64_intdigest(s, seed)` of every string (UTF-8 bytes) or binary value; nulls hash as empty."""
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks() if strings.num_chunks else pa.array([], type=pa.large_binary())
    values = strings.cast(pa.large_binary())
    n = len(values)
    seed &= _MASK64
    out = np.empty(n, dtype=np.uint64)
    if n == 0:
        return out
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64)[values.offset : values.offset + n + 1]
    data_buffer = values.buffers()[2]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, dtype=np.uint8)
    data = np.concatenate([data, np.zeros(16, dtype=np.uint8)])  # reads never run past the end
    start = offsets[:-1].astype(np.int64)
    length = np.diff(offsets).astype(np.int64)
    if values.null_count:
        length = np.where(np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool), 0, length)
    with np.errstate(over="ignore"):
        out[length == 0] = _empty(seed)
        for low, high, formula in ((1, 3, _len_1to3), (4, 8, _len_4to8), (9, 16, _len_9to16), (17, 128, _len_17to128)):
            rows = np.flatnonzero((length >= low) & (length <= high))
            if len(rows):
                out[rows] = formula(data, start[rows], length[rows], seed)
    for row in np.flatnonzero(length > 128):
        out[row] = xxhash.xxh3_64_intdigest(values[int(row)].as_py(), seed)
    return out
