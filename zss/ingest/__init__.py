"""Ingest: read a source once and write resumable shards of masks, frozen features and concepts.

- `sources/`: one reader per input layout (coco, sa1b, webdataset, folder), refs on the driver, rows in workers
- `stages/`: decode, masks, features, concepts: pure callables over dict-of-numpy batches
- `config`: `IngestConfig`, one dataclass for a run, from a preset + CLI options + `--set`
- `runner`: the ingest job (`zss ingest`): prepare OUT, check the models, plan, run, manifest, report
- `plan`: which shards are pending and which source rows each holds
- `cluster`: Ray start/join, actor sizing, start and stop
- `run_loop`: the driver's loop streaming pending shards through the worker actors
- `report`: the stats collector of finished shards and the summary it prints
- `workers`: the Ray shard worker that decodes, runs the model stages and writes a whole shard
- `concept_bank`: the closed concept set (+ faiss index) of `zss concepts build|lookup`
- `inspect`: `zss inspect SHARDS` (summary, one decoded sample, `--verify`)
"""
