"""Storage (fsspec with retries and atomic writes), TFRecord framing, protobuf wire helpers, staged
shard writing."""
