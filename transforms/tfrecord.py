"""TFRecord framing without TensorFlow.

The data plane writes and reads TFRecord files on every runner and every fsspec backend; importing
TensorFlow for that would cost seconds and a gigabyte per worker.  The format is four fields per
record: little-endian uint64 length, masked CRC32C of the length, payload, masked CRC32C of payload.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

import google_crc32c

_MASK_DELTA = 0xA282EAD8


class CorruptRecordError(ValueError):
    """A TFRecord file is truncated or fails its checksum."""


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def encode_record(payload: bytes) -> bytes:
    length = struct.pack("<Q", len(payload))
    return b"".join(
        (length, struct.pack("<I", _masked_crc(length)), payload, struct.pack("<I", _masked_crc(payload)))
    )


def encode_records(payloads: Iterable[bytes]) -> bytes:
    return b"".join(encode_record(p) for p in payloads)


def _record_length(buffer, pos: int, source: str, offset: int = 0) -> int:
    """The payload length of the record whose header starts at ``pos`` (12 bytes must be there)."""
    (length,) = struct.unpack_from("<Q", buffer, pos)
    (length_crc,) = struct.unpack_from("<I", buffer, pos + 8)
    if length_crc != _masked_crc(bytes(buffer[pos:pos + 8])):
        raise CorruptRecordError(f"{source}: bad length checksum at byte {offset + pos}")
    return length


def _record_payload(buffer, pos: int, length: int, source: str, offset: int = 0) -> bytes:
    """The checked payload of a whole record at ``pos`` whose length is known."""
    payload = bytes(buffer[pos + 12:pos + 12 + length])
    (data_crc,) = struct.unpack_from("<I", buffer, pos + 12 + length)
    if data_crc != _masked_crc(payload):
        raise CorruptRecordError(f"{source}: bad payload checksum at byte {offset + pos}")
    return payload


def iter_records(data: bytes, *, source: str = "<bytes>") -> Iterator[bytes]:
    """Yield payloads from a whole TFRecord file's bytes, verifying both checksums."""
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 12:
            raise CorruptRecordError(f"{source}: truncated record header at byte {pos}")
        length = _record_length(data, pos, source)
        if pos + 16 + length > end:
            raise CorruptRecordError(f"{source}: truncated record at byte {pos}")
        yield _record_payload(data, pos, length, source)
        pos += 16 + length


def iter_records_from_blocks(blocks: Iterable[bytes], *, source: str = "<stream>") -> Iterator[bytes]:
    """Like :func:`iter_records`, over a file read piece by piece (``storage.iter_blocks``): memory is
    one block plus one record, whatever the file's size."""
    buffer = bytearray()
    offset = 0  # file offset of buffer[0], for error messages
    for block in blocks:
        buffer += block
        pos = 0
        while len(buffer) - pos >= 12:
            length = _record_length(buffer, pos, source, offset)
            if len(buffer) - pos < 16 + length:
                break
            yield _record_payload(buffer, pos, length, source, offset)
            pos += 16 + length
        del buffer[:pos]
        offset += pos
    if buffer:
        kind = "record header" if len(buffer) < 12 else "record"
        raise CorruptRecordError(f"{source}: truncated {kind} at byte {offset}")


def encode_records_in_pieces(payloads: Iterable[bytes], piece_bytes: int = 1 << 20) -> Iterator[bytes]:
    """Framed records joined into pieces of about ``piece_bytes``: for ``storage.write_stream``."""
    piece: list[bytes] = []
    held = 0
    for payload in payloads:
        framed = encode_record(payload)
        piece.append(framed)
        held += len(framed)
        if held >= piece_bytes:
            yield b"".join(piece)
            piece, held = [], 0
    if piece:
        yield b"".join(piece)
