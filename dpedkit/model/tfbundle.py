"""Read TensorFlow "V2 bundle" checkpoints (``PREFIX.index`` + ``PREFIX.data-*``) without TensorFlow.

The format, as TensorFlow's ``tensor_bundle`` writes it:

- ``.index`` is a LevelDB-style sorted string table: data blocks of prefix-compressed
  key/value entries, each block followed by a 1-byte compression type (0, none) and the
  masked CRC-32C of block + type; an index block mapping each data block's last key to
  its (offset, size); a 48-byte footer holding the index block's handle and a magic number.
- The value under the empty key is a ``BundleHeaderProto`` (shard count, endianness); every
  other key is a tensor name whose value is a ``BundleEntryProto`` (dtype, shape, shard,
  offset, size and the masked CRC-32C of the tensor's bytes).
- ``.data-NNNNN-of-MMMMM`` shards hold the raw tensor bytes (little-endian, C order).

Every length, offset and shape is checked against the file sizes before anything is
allocated, and every checksum is verified, so a corrupt, truncated or foreign file raises
:class:`BundleError` naming the problem.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dpedkit.model.checkpoint import CheckpointError

MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
MAX_INDEX_BYTES = 64 << 20     # a bundle index is a few KB per thousand tensors

# tensorflow/core/framework/types.proto → NumPy (numeric types only)
DTYPES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 9: "int64", 10: "bool",
          14: "bfloat16", 17: "uint16", 19: "float16", 22: "uint32", 23: "uint64"}
ITEMSIZE = {"bfloat16": 2}


class BundleError(CheckpointError):
    """A file that is not a readable TensorFlow V2 checkpoint bundle."""


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str | None        # None: a type we do not read (strings, resources)
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int


# -- CRC-32C (Castagnoli), as LevelDB and TensorFlow mask it -------------------------------
def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    crc, table = 0xFFFFFFFF, _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    c = crc32c(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


# -- wire formats -------------------------------------------------------------------------
def _varint(buf: bytes, pos: int, what: str) -> tuple[int, int]:
    value = shift = 0
    for i in range(10):
        if pos + i >= len(buf):
            raise BundleError(f"{what}: truncated varint")
        b = buf[pos + i]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos + i + 1
        shift += 7
    raise BundleError(f"{what}: varint longer than 10 bytes")


def _proto_fields(buf: bytes, what: str) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message; varints as int, bytes as bytes."""
    fields, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos, what)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, what)
        elif wire == 1 or wire == 5:
            n = 8 if wire == 1 else 4
            if pos + n > len(buf):
                raise BundleError(f"{what}: truncated fixed-width field")
            value = int.from_bytes(buf[pos:pos + n], "little")
            pos += n
        elif wire == 2:
            n, pos = _varint(buf, pos, what)
            if pos + n > len(buf):
                raise BundleError(f"{what}: a field runs past the end of its message")
            value = buf[pos:pos + n]
            pos += n
        else:
            raise BundleError(f"{what}: unsupported protobuf wire type {wire}")
        fields.append((field, value))
    return fields


def _block(index: bytes, offset: int, size: int, what: str) -> bytes:
    """A table block's contents after checking its bounds, compression type and checksum."""
    if offset < 0 or size < 0 or offset + size + 5 > len(index):
        raise BundleError(f"{what}: a block lies outside the index file (truncated?)")
    contents, kind = index[offset:offset + size], index[offset + size]
    if kind != 0:
        raise BundleError(f"{what}: compressed table blocks (type {kind}) are not supported")
    (stored,) = struct.unpack_from("<I", index, offset + size + 1)
    if masked_crc32c(index[offset:offset + size + 1]) != stored:
        raise BundleError(f"{what}: checksum mismatch in a table block (corrupt file)")
    return contents


def _block_entries(block: bytes, what: str) -> list[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise BundleError(f"{what}: table block too short")
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * restarts
    if restarts == 0 or end < 0:
        raise BundleError(f"{what}: bad restart count in a table block")
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos, what)
        unshared, pos = _varint(block, pos, what)
        n_value, pos = _varint(block, pos, what)
        if shared > len(key) or pos + unshared + n_value > end:
            raise BundleError(f"{what}: a table entry runs past its block")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        entries.append((key, block[pos:pos + n_value]))
        pos += n_value
    return entries


def _table(index: bytes, what: str) -> list[tuple[bytes, bytes]]:
    """All key/value entries of a sorted string table, in order."""
    if len(index) < FOOTER_SIZE:
        raise BundleError(f"{what}: too short to be a checkpoint index ({len(index)} bytes)")
    footer = index[-FOOTER_SIZE:]
    if int.from_bytes(footer[-8:], "little") != MAGIC:
        raise BundleError(f"{what}: not a TensorFlow checkpoint index (bad magic number)")
    _, pos = _varint(footer, 0, what)           # metaindex handle: offset, size (unused)
    _, pos = _varint(footer, pos, what)
    off, pos = _varint(footer, pos, what)
    size, pos = _varint(footer, pos, what)
    entries = []
    for _, handle in _block_entries(_block(index, off, size, what), what):
        b_off, p = _varint(handle, 0, what)
        b_size, _ = _varint(handle, p, what)
        entries += _block_entries(_block(index, b_off, b_size, what), what)
    keys = [k for k, _ in entries]
    if keys != sorted(keys) or len(set(keys)) != len(keys):
        raise BundleError(f"{what}: table keys are not sorted and unique")
    return entries


# -- bundle ---------------------------------------------------------------------------------
def _prefix(path: str | Path) -> Path:
    p = Path(path)
    if p.name.endswith(".index"):
        return p.with_name(p.name[: -len(".index")])
    if ".data-" in p.name:
        return p.with_name(p.name.split(".data-")[0])
    return p


def is_bundle(path: str | Path) -> bool:
    p = _prefix(path)
    return p.with_name(p.name + ".index").is_file()


def _typed_fields(buf: bytes, what: str, messages: tuple[int, ...] = ()) -> list[tuple[int, int | bytes]]:
    """Protobuf fields, checking that ``messages`` are length-delimited and the rest integers."""
    fields = _proto_fields(buf, what)
    for field, v in fields:
        if isinstance(v, bytes) != (field in messages):
            raise BundleError(f"{what}: malformed entry (field {field} has the wrong wire type)")
    return fields


def _entry(name: str, value: bytes, what: str) -> TensorEntry:
    dtype, shape, shard, offset, size, crc = None, [], 0, 0, 0, 0
    for field, v in _typed_fields(value, f"{what}: {name}", messages=(2, 7)):
        if field == 1:
            dtype = DTYPES.get(v)
        elif field == 2:
            for f, dim in _typed_fields(v, what, messages=(2,)):
                if f == 2:
                    d = dict(_typed_fields(dim, what, messages=(2,))).get(1, 0)
                    if d >= 1 << 62:
                        raise BundleError(f"{what}: {name} has a negative or huge dimension")
                    shape.append(d)
                elif f == 3 and v:
                    raise BundleError(f"{what}: {name} has an unknown rank")
        elif field == 3:
            shard = v
        elif field == 4:
            offset = v
        elif field == 5:
            size = v
        elif field == 6:
            crc = v
        elif field == 7:
            raise BundleError(f"{what}: {name} is a partitioned (sliced) variable; not supported")
    return TensorEntry(name, dtype, tuple(shape), shard, offset, size, crc)


def list_bundle(prefix: str | Path) -> tuple[dict[str, TensorEntry], int]:
    """The tensor entries of a bundle, by name, and its shard count."""
    prefix = _prefix(prefix)
    index_path = prefix.with_name(prefix.name + ".index")
    what = str(index_path)
    try:
        n = index_path.stat().st_size
        if n > MAX_INDEX_BYTES:
            raise BundleError(f"{what}: {n} bytes is far too large for a checkpoint index")
        index = index_path.read_bytes()
    except OSError as e:
        raise BundleError(f"cannot read {what}: {e.strerror or e}") from None
    entries, shards, big_endian = {}, None, False
    for key, value in _table(index, what):
        if key == b"":
            header = dict(_typed_fields(value, what, messages=(3,)))
            shards, big_endian = header.get(1, 0), header.get(2, 0) == 1
            continue
        try:
            name = key.decode()
        except UnicodeDecodeError:
            raise BundleError(f"{what}: a tensor name is not UTF-8") from None
        entries[name] = _entry(name, value, what)
    if shards is None:
        raise BundleError(f"{what}: no bundle header (not a V2 checkpoint?)")
    if big_endian:
        raise BundleError(f"{what}: big-endian checkpoints are not supported")
    if not 1 <= shards <= 10000 or any(e.shard >= shards for e in entries.values()):
        raise BundleError(f"{what}: bad shard count {shards}")
    return entries, shards


def read_bundle(prefix: str | Path) -> dict[str, np.ndarray]:
    """Every numeric tensor of a bundle as a NumPy array (C order); checksums verified.

    Tensors of types this reader does not convert (strings, resources) are left out.
    """
    prefix = _prefix(prefix)
    entries, shards = list_bundle(prefix)
    out: dict[str, np.ndarray] = {}
    files: dict[int, bytes] = {}
    for e in entries.values():
        if e.dtype is None:
            continue
        path = prefix.with_name(f"{prefix.name}.data-{e.shard:05d}-of-{shards:05d}")
        count = int(np.prod(e.shape, dtype=object)) if e.shape else 1
        if count * ITEMSIZE.get(e.dtype, np.dtype(e.dtype if e.dtype != "bfloat16" else "uint16").itemsize) != e.size:
            raise BundleError(f"{path}: {e.name} declares shape {list(e.shape)} of {e.dtype} but {e.size} bytes")
        if e.shard not in files:
            try:
                files[e.shard] = path.read_bytes()
            except OSError as err:
                raise BundleError(f"cannot read {path}: {err.strerror or err}") from None
        data = files[e.shard]
        if e.offset + e.size > len(data):
            raise BundleError(f"{path}: {e.name} lies past the end of the file (truncated?)")
        raw = data[e.offset:e.offset + e.size]
        if masked_crc32c(raw) != e.crc32c:
            raise BundleError(f"{path}: checksum mismatch in {e.name} (corrupt file)")
        if e.dtype == "bfloat16":
            arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, np.dtype(e.dtype).newbyteorder("<")).astype(e.dtype)
        out[e.name] = arr.reshape(e.shape)
    return out
