"""On-disk formats every layer may read or write.

- `storage`: one storage layer for local paths and fsspec URLs (open, list, join, atomic writes, upload
  of a locally staged file).
- `tar_reader`: the one shard tar reader (memory-mapped for local files, streamed for URLs), used by
  ingest, `zss inspect` and the trainer.
- `npy`: `.npy` member bytes to arrays and back.
- `shards`: the shard format on top of those (tar + parquet + stats + manifest, feature codec, validation).
- `model_dir`: model directories; `weights`: safetensors weights; `rle`: COCO RLE / SA-1B records;
  `vocab`: class-list and vocabulary files; `specs`: the one model-spec parser (`parse_model_spec` ->
  `ModelSpec`) every loader takes.
"""
