import random

import pytest

from melodyflow.transforms.io.tfrecord import (CorruptRecordError, encode_records, encode_records_in_pieces, iter_records,
                                iter_records_from_blocks)


def test_roundtrip_preserves_payloads_and_order():
    payloads = [b"", b"a", bytes(range(256)) * 40, b"last"]
    assert list(iter_records(encode_records(payloads))) == payloads


def test_truncated_and_corrupted_files_are_detected():
    data = encode_records([b"hello world", b"second"])
    with pytest.raises(CorruptRecordError, match="truncated"):
        list(iter_records(data[:-3]))
    flipped = bytearray(data)
    flipped[14] ^= 0xFF  # inside the first payload
    with pytest.raises(CorruptRecordError, match="checksum"):
        list(iter_records(bytes(flipped)))


def test_tensorflow_reads_our_records(tmp_path):
    """Our framing must be real TFRecord: TensorFlow's own reader verifies the CRCs."""
    tf = pytest.importorskip("tensorflow")
    payloads = [b"x" * n for n in (0, 1, 1000, 70000)]
    path = tmp_path / "r.tfrecord"
    path.write_bytes(encode_records(payloads))
    got = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
    assert got == payloads
    with tf.io.TFRecordWriter(str(tmp_path / "tf.tfrecord")) as writer:
        for p in payloads:
            writer.write(p)
    assert (tmp_path / "tf.tfrecord").read_bytes() == path.read_bytes()


def test_streamed_reading_and_writing_match_whole_files():
    rng = random.Random(7)
    payloads = [rng.randbytes(rng.choice([0, 1, 11, 12, 13, 500, 70_000])) for _ in range(300)]
    data = encode_records(payloads)
    assert b"".join(encode_records_in_pieces(payloads, piece_bytes=10_000)) == data
    for block in (1, 5, 12, 16, 4096, 1 << 20):
        blocks = (data[i:i + block] for i in range(0, len(data), block))
        assert list(iter_records_from_blocks(blocks)) == payloads == list(iter_records(data))
    with pytest.raises(CorruptRecordError, match="truncated"):
        list(iter_records_from_blocks([data[:-1]]))
    flipped = bytearray(data)
    flipped[len(encode_records(payloads[:3])) + 2] ^= 1  # a length byte of the fourth record
    with pytest.raises(CorruptRecordError, match="bad length checksum"):
        list(iter_records_from_blocks([bytes(flipped)]))


def test_every_nth_record_like_islice_and_each_payload_checked_by_the_reader_that_yields_it():
    rng = random.Random(11)
    payloads = [rng.randbytes(rng.choice([0, 3, 40, 900])) for _ in range(101)]
    data = encode_records(payloads)
    for start, step in ((0, 1), (0, 3), (2, 3), (100, 7), (150, 2)):
        for block in (7, 4096):
            blocks = (data[i:i + block] for i in range(0, len(data), block))
            assert list(iter_records_from_blocks(blocks, start=start, step=step)) == payloads[start::step]
    # A damaged payload of record 4 fails the reader that yields it (4 = 1 + 3k), not the others.
    damaged = bytearray(data)
    damaged[len(encode_records(payloads[:4])) + 12] ^= 1
    with pytest.raises(CorruptRecordError, match="bad payload checksum"):
        list(iter_records_from_blocks([bytes(damaged)], start=1, step=3))
    assert len(list(iter_records_from_blocks([bytes(damaged)], start=0, step=3))) == 34
    with pytest.raises(ValueError):
        list(iter_records_from_blocks([data], step=0))
