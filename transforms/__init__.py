"""The data plane: pure functions, thin Beam wrappers, storage and shard writers. Never imports Prefect.

- ``io``: storage through fsspec (retries, atomic writes), TFRecord framing, protobuf wire helpers,
  staged shard writing, and the stage contract every output directory keeps.
- ``beam``: runner configuration, work order and live progress shared by the Beam jobs.
- ``midi``: the compiled MIDI reader and the cheap structural scan that guards the parser.
- ``sandbox``: the isolated parser process (time and memory limits) and the template it is forked from.
- ``ingest``: score files → NoteSequence batches (plan, per-file conversion, dedup, the Beam job).
- ``melodies``: NoteSequences → melody datasets (configs, extraction, encoding, the Beam job).
"""
