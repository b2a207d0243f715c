#!/usr/bin/env python3
"""Writes the seed corpus under fuzz/seeds/<target>/: valid inputs of each format (drawn from
docs/protocol.md and docs/storage-format.md) and a few edge cases, so the fuzzers start deep
inside the decoders. Rerun after a format change: python3 fuzz/make_seeds.py"""
import os, struct, zlib

HERE = os.path.dirname(os.path.abspath(__file__))

def write(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, name), "wb").write(data)

def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out

# RESP: first byte picks the chunk size of the second feeding.
for i, data in enumerate([
    resp(b"SET", b"k", b"v"), resp(b"GET", b"k") + resp(b"INCR", b"n"), b"PING\r\n",
    b'SET "a b" \'c\\\'d\' "\\x41\\n"\r\n', b"*0\r\n*-1\r\n\r\n", b"*1\r\n$-1\r\n",
    b"*2\r\n$3\r\nGET\r\n$999999999999\r\n", b"*1\r\n*1\r\n*1\r\n$1\r\nx\r\n",
    resp(b"MULTI") + resp(b"SET", b"a", b"1") + resp(b"EXEC"), b"GET k\n",
]):
    write("resp_parser", "seed%02d" % i, bytes([i * 5]) + data)

def frame(opcode, body, flags=0, request_id=7):
    return bytes([0xFB, 1, opcode, flags]) + struct.pack("<II", request_id, len(body)) + body

def b(x):
    return struct.pack("<I", len(x)) + x

binary = {
    "ping": frame(0x01, b"hello"), "get": frame(0x10, b(b"k")),
    "set_ttl_nx": frame(0x11, b(b"k") + b(b"v") + struct.pack("<Q", 1000), flags=0x05),
    "incrby": frame(0x15, b(b"n") + struct.pack("<q", -3)),
    "mget": frame(0x20, struct.pack("<I", 2) + b(b"a") + b(b"b")),
    "mset": frame(0x21, struct.pack("<I", 1) + b(b"a") + b(b"1")),
    "scan": frame(0x28, struct.pack("<QI", 0, 10) + b(b"k*"), flags=0x01),
    "response_mget": frame(0x20, struct.pack("<I", 2) + b(b"x") + struct.pack("<I", 0xFFFFFFFF)),
    "response_scan": frame(0x28, struct.pack("<QI", 5, 1) + b(b"key")),
    "huge_claim": bytes([0xFB, 1, 0x11, 0]) + struct.pack("<II", 1, 0xFFFFFFFF),
    # CALL (0xF0): an argument list whose first item is the name.
    "call": frame(0xF0, struct.pack("<I", 3) + b(b"APPEND") + b(b"k") + b(b"v")),
    # A typed value (an array of a simple, an integer, a map of bulk to double, a boolean),
    # as a CALL response, and as a push frame (status 0x20, request id 0).
    "response_value": frame(0xF0, bytes([0x05]) + struct.pack("<I", 4)
                            + bytes([0x01]) + b(b"OK") + bytes([0x03]) + struct.pack("<q", 42)
                            + bytes([0x06]) + struct.pack("<I", 1) + bytes([0x04]) + b(b"k")
                            + bytes([0x08]) + struct.pack("<d", 0.5) + bytes([0x09, 1])),
    "push": frame(0xF0, bytes([0x05]) + struct.pack("<I", 3) + bytes([0x04]) + b(b"message")
                  + bytes([0x04]) + b(b"news") + bytes([0x04]) + b(b"hi"), flags=0x20, request_id=0),
    # Nesting deeper than the decoder's 64 levels.
    "deep_value": frame(0xF0, (bytes([0x05]) + struct.pack("<I", 1)) * 100 + bytes([0x00])),
}
for name, data in binary.items():
    write("binary_frame", name, data)
write("binary_frame", "pipeline", binary["get"] + binary["set_ttl_nx"] + binary["ping"])

def segment_header(seg_id, origin=0):
    h = b"FLINSEG\0" + struct.pack("<HHB3sQI", 1, 32, origin, b"\0" * 3, seg_id, 0)
    return h + struct.pack("<I", zlib.crc32(h))

def record(kind, ns, flags, seq, expiry, key, value):
    rest = struct.pack("<BBHIIQQ", kind, ns, flags, len(key), len(value), seq, expiry) + key + value
    return struct.pack("<I", zlib.crc32(rest)) + rest

def batch(seq, members):
    body = b"".join(record(k, 1, 1, seq, 0, key, v) for k, key, v in members)
    rest = struct.pack("<BBHIIQQ", 3, 0, 0, 0, len(body), seq, 0) + body
    return struct.pack("<I", zlib.crc32(rest)) + rest

put1 = record(1, 1, 0, 1, 0, b"alpha", b"one")
put2 = record(1, 1, 0, 2, 1800000000000, b"beta", b"two")
delete = record(2, 1, 0, 3, 0, b"alpha", b"")
btch = batch(4, [(1, b"a", b"1"), (2, b"b", b""), (1, b"c", b"3")])
write("record_decode", "sealed", segment_header(1) + put1 + put2 + delete + btch)
write("record_decode", "active_padded", segment_header(2) + put1 + btch + b"\0" * 64)
write("record_decode", "torn_tail", segment_header(3) + put1 + put2[:20])
write("record_decode", "compaction", segment_header(4, 1) + put1 + record(1, 5, 0, 9, 0, b"sys", b"x"))

def hint_file(seg_id, entries):
    out = b"FLINHINT" + struct.pack("<H6sQ", 1, b"\0" * 6, seg_id)
    for seq, expiry, offset, rec_len, kind, ns, key in entries:
        out += struct.pack("<QQIIIBBH", seq, expiry, offset, rec_len, len(key), kind, ns, 0) + key
    out += struct.pack("<Q", len(entries))
    return out + struct.pack("<I", zlib.crc32(out)) + b"\0" * 4

hints = hint_file(1, [(1, 0, 32, 40, 1, 1, b"alpha"), (3, 0, 80, 37, 2, 1, b"alpha"), (4, 0, 150, 34, 1, 1, b"")])
write("hint_decode", "valid", hints)
write("hint_decode", "empty", hint_file(1, []))
write("hint_decode", "entries_only", hints[24:-16])
write("hint_decode", "bad_crc", hints[:-5] + b"\x01" + hints[-4:])
