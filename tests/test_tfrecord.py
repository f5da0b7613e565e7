import pytest

from transforms.tfrecord import CorruptRecordError, encode_records, iter_records


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
