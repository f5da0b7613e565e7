"""The compiled reader's and extractor's protobuf tags are note-seq's own field numbers and wire types."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import FieldDescriptor
from note_seq.protobuf import music_pb2

from melodyflow.transforms.io import proto_fields

_WIRE_TYPE = {FieldDescriptor.TYPE_DOUBLE: proto_fields.FIXED64, FieldDescriptor.TYPE_MESSAGE: proto_fields.LEN,
              FieldDescriptor.TYPE_STRING: proto_fields.LEN, FieldDescriptor.TYPE_INT32: proto_fields.VARINT,
              FieldDescriptor.TYPE_INT64: proto_fields.VARINT, FieldDescriptor.TYPE_BOOL: proto_fields.VARINT,
              FieldDescriptor.TYPE_ENUM: proto_fields.VARINT}


def _descriptor(path: str):
    message = music_pb2
    for part in path.split("."):
        message = getattr(message, part)
    return message.DESCRIPTOR


@pytest.mark.parametrize("message,field", sorted(proto_fields.CHECKED))
def test_tag_matches_note_seq_descriptor(message, field):
    descriptor = _descriptor(message).fields_by_name[field]
    expected = proto_fields.CHECKED[(message, field)]
    if isinstance(expected, tuple):  # a field number only (its tag is written by a generic helper)
        assert expected[0] == descriptor.number
    else:
        packed = descriptor.is_repeated and descriptor.type != FieldDescriptor.TYPE_MESSAGE
        wire = proto_fields.LEN if packed else _WIRE_TYPE[descriptor.type]
        assert expected == proto_fields.tag(descriptor.number, wire)
