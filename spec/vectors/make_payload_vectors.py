#!/usr/bin/env python3
"""Writes payloads.json: payload vectors for wire.md §11.2.2 (layout hash), §11.4 (typed arrays)
and §12.1 (byte shuffle).

An independent implementation from the spec alone (standard library only), so the vectors check
rhizomorph against a second reading of the spec. A numpy peer reads each valid typed array with
numpy.frombuffer(bytes.fromhex(hex), dtype=numpy_dtype, offset=data_offset).reshape(dims).
Run: `python3 spec/vectors/make_payload_vectors.py`.
"""
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_vectors import varint  # noqa: E402  (§2.2)

DTYPES = {  # §11.4: tag, item size, struct code, numpy dtype
    "u8": (0x01, 1, "B", "<u1"), "i8": (0x02, 1, "b", "<i1"), "u16": (0x03, 2, "H", "<u2"),
    "i16": (0x04, 2, "h", "<i2"), "u32": (0x05, 4, "I", "<u4"), "i32": (0x06, 4, "i", "<i4"),
    "u64": (0x07, 8, "Q", "<u8"), "i64": (0x08, 8, "q", "<i8"), "f16": (0x09, 2, "e", "<f2"),
    "f32": (0x0A, 4, "f", "<f4"), "f64": (0x0B, 8, "d", "<f8"), "bool": (0x0C, 1, "?", "|b1"),
}


def fnv1a64(data):
    """§11.2.2: FNV-1a, 64-bit."""
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def typed_array(dtype, dims, values):
    """§11.4: DType, NDim, dimensions (varints), Pad Length, Pad to 16, little-endian data."""
    tag, size, code, _ = DTYPES[dtype]
    head = bytes([tag, len(dims)]) + b"".join(varint(d) for d in dims)
    pad = (16 - (len(head) + 1) % 16) % 16
    head += bytes([pad]) + bytes(pad)
    return head, head + struct.pack("<%d%s" % (len(values), code), *values)


def shuffle(data, k):
    """§12.1: byte j of element i goes to j*m + i; the n mod k tail is copied unchanged."""
    m = len(data) // k
    out = bytearray(len(data))
    for i in range(m):
        for j in range(k):
            out[j * m + i] = data[i * k + j]
    out[m * k:] = data[m * k:]
    return bytes(out)


def main():
    hashes = []
    for name, version, layout in [
        ("Call", 1, "method : String, args : Vec < u8 >"),
        ("Call", 2, "method : String, args : Vec < u8 >"),
        ("Point", 1, "x : f64, y : f64, label : String"),
        ("T", 4294967295, "x"),
    ]:
        s = f"{name}@{version}:{layout}"
        hashes.append({"name": name, "version": version, "layout": layout,
                       "hash": "%016x" % fnv1a64(s.encode())})

    valid = []
    for name, dtype, dims, values in [
        ("f64 vector", "f64", [4], [0.0, 1.5, -2.25, 1e300]),
        ("f32 matrix 2x3", "f32", [2, 3], [1, 2, 3, 4, 5, 6]),
        ("i64 scalar (0 dims)", "i64", [], [-7]),
        ("u8 empty", "u8", [0], []),
        ("u16 3-d 2x2x2", "u16", [2, 2, 2], list(range(8))),
        ("bool 3", "bool", [3], [True, False, True]),
        ("f16 2", "f16", [2], [1.0, -0.5]),
        ("i32 with a 2-byte dimension", "i32", [100], list(range(-50, 50))),
    ]:
        head, whole = typed_array(dtype, dims, values)
        valid.append({"name": name, "dtype": dtype, "numpy_dtype": DTYPES[dtype][3], "dims": dims,
                      "values": values, "data_offset": len(head), "hex": whole.hex()})

    invalid = []
    f64 = typed_array("f64", [2], [1.0, 2.0])[1]
    for name, raw, kind in [
        ("empty payload", b"", "Empty"),
        ("unknown dtype 0x0D", bytes([0x0D, 0, 15]) + bytes(15), "UnknownDType"),
        ("no NDim", bytes([0x01]), "Truncated"),
        ("33 dimensions", bytes([0x01, 33]), "TooManyDimensions"),
        ("dimension cut short", bytes([0x01, 1, 0x40]), "BadDimension"),
        ("non-minimal dimension", bytes([0x01, 1, 0x40, 0x02, 0]) + bytes(11) + bytes(2), "BadDimension"),
        ("no pad length", bytes([0x01, 1, 2]), "Truncated"),
        ("pad length 16", bytes([0x01, 0, 16]) + bytes(16), "BadPadLength"),
        ("pad longer than the payload", bytes([0x01, 0, 13]) + bytes(5), "BadPadLength"),
        ("non-zero padding", bytes([0x01, 0, 1, 7]), "NonZeroPadding"),
        ("data one byte short", f64[:-1], "LengthMismatch"),
        ("data one byte long", f64 + b"\x00", "LengthMismatch"),
        # §11.4: the product is computed in unsigned 64 bits: (2^62 - 1)^2 overflows it ...
        ("dimension product overflows", bytes([0x01, 2]) + varint(2**62 - 1) * 2 + bytes([0]), "DimensionOverflow"),
        # ... and so does 2^61 elements of 8 bytes, though the element count alone fits.
        ("data size overflows", bytes([0x07, 1]) + varint(2**61) + bytes([0]), "DimensionOverflow"),
    ]:
        invalid.append({"name": name, "hex": raw.hex(),
                        "error": {"code": "PAYLOAD_ERROR", "kind": kind}})

    shuffles = []
    for k, data in [(2, bytes(range(10))), (4, bytes(range(18))), (8, bytes(range(16)))]:
        shuffles.append({"element_size": k, "hex": data.hex(), "shuffled": shuffle(data, k).hex()})

    doc = {
        "spec": "wire.md §11.2.2, §11.4, §12.1",
        "generator": "spec/vectors/make_payload_vectors.py",
        "layout_hashes": hashes,
        "typed_arrays": {"valid": valid, "invalid": invalid},
        "shuffles": shuffles,
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "payloads.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {path}: {len(valid)} valid and {len(invalid)} invalid typed arrays")


if __name__ == "__main__":
    main()
