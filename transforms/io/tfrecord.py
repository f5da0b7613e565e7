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
_HEADER = struct.Struct("<QI")  # payload length, masked CRC32C of the length's 8 bytes
_CRC = struct.Struct("<I")


class CorruptRecordError(ValueError):
    """A TFRecord file is truncated or fails its checksum."""


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    return _mask(google_crc32c.value(data))


def encode_record(payload: bytes) -> bytes:
    length = struct.pack("<Q", len(payload))
    return b"".join(
        (length, struct.pack("<I", _masked_crc(length)), payload, struct.pack("<I", _masked_crc(payload)))
    )


def encode_records(payloads: Iterable[bytes]) -> bytes:
    return b"".join(encode_record(p) for p in payloads)


def iter_records(data: bytes, *, source: str = "<bytes>") -> Iterator[bytes]:
    """Yield payloads from a whole TFRecord file's bytes, verifying both checksums."""
    return iter_records_from_blocks((data,), source=source)


def iter_records_from_blocks(blocks: Iterable[bytes], *, source: str = "<stream>", start: int = 0,
                             step: int = 1) -> Iterator[bytes]:
    """Like :func:`iter_records`, over a file read piece by piece (``storage.iter_blocks``): memory is
    one block plus one record, whatever the file's size.

    With ``start``/``step``, only records ``start``, ``start + step``, … are yielded, like
    ``itertools.islice``; the others are framed but neither copied nor checksummed, since the reader
    that yields them checks them.  Every stage reads records through this loop (shards, staging files,
    read-backs), so it is written for speed: one view of the buffer, no helper calls per record.
    """
    if start < 0 or step < 1:
        raise ValueError(f"start must be >= 0 and step >= 1, got {start} and {step}")
    crc32c, unpack_header, unpack_crc = google_crc32c.value, _HEADER.unpack_from, _CRC.unpack_from
    buffer = bytearray()
    offset = 0  # file offset of buffer[0], for error messages
    number = 0  # of the record at ``pos``
    for block in blocks:
        buffer += block
        pos, size = 0, len(buffer)
        with memoryview(buffer) as view:
            while size - pos >= 12:
                length, length_crc = unpack_header(view, pos)
                if length_crc != _mask(crc32c(bytes(view[pos:pos + 8]))):
                    raise CorruptRecordError(f"{source}: bad length checksum at byte {offset + pos}")
                end = pos + 16 + length
                if size < end:
                    break
                if number >= start and (number - start) % step == 0:
                    payload = bytes(view[pos + 12:end - 4])
                    if unpack_crc(view, end - 4)[0] != _mask(crc32c(payload)):
                        raise CorruptRecordError(f"{source}: bad payload checksum at byte {offset + pos}")
                    yield payload
                number += 1
                pos = end
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
