"""A minimal TensorFlow V2 bundle writer for tests: lets a test declare any entry, valid or not."""
import struct

import numpy as np

from dpedkit.model.tfbundle import MAGIC, masked_crc32c

CODES = {"float32": 1, "float64": 2, "int32": 3, "uint8": 4, "int64": 9, "float16": 19, "bfloat16": 14,
         "string": 7}


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, wire, payload):
    key = varint(num << 3 | wire)
    if wire == 0:
        return key + varint(payload)
    if wire == 5:
        return key + struct.pack("<I", payload)
    return key + varint(len(payload)) + payload


def entry_proto(dtype, shape, offset, size, crc, shard=0):
    dims = b"".join(field(2, 2, field(1, 0, d)) for d in shape)
    return (field(1, 0, CODES[dtype]) + field(2, 2, dims) + field(3, 0, shard) + field(4, 0, offset)
            + field(5, 0, size) + field(6, 5, crc))


def block(entries):
    body = b"".join(varint(0) + varint(len(k)) + varint(len(v)) + k + v for k, v in entries)
    contents = body + struct.pack("<II", 0, 1)      # one restart point at 0
    return contents + b"\x00" + struct.pack("<I", masked_crc32c(contents + b"\x00"))


def write_bundle(prefix, tensors, overrides=None, shards=1):
    """Write ``tensors`` (name → array) as a bundle; ``overrides`` replaces entry fields by name."""
    data, entries = bytearray(), [(b"", field(1, 0, shards) + field(3, 2, field(1, 0, 1)))]
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        raw = arr.tobytes(order="C")
        f = dict(dtype=str(arr.dtype), shape=arr.shape, offset=len(data), size=len(raw), crc=masked_crc32c(raw))
        f.update((overrides or {}).get(name, {}))
        entries.append((name.encode(), entry_proto(**f)))
        data += raw
    data_block = block(entries)
    index_block = block([(entries[-1][0], varint(0) + varint(len(data_block) - 5))])
    handles = varint(0) + varint(0) + varint(len(data_block)) + varint(len(index_block) - 5)
    footer = handles.ljust(40, b"\x00") + struct.pack("<Q", MAGIC)
    with open(f"{prefix}.index", "wb") as fh:
        fh.write(data_block + index_block + footer)
    with open(f"{prefix}.data-00000-of-{shards:05d}", "wb") as fh:
        fh.write(bytes(data))
