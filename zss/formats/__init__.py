"""On-disk formats every layer may read or write: shard tars + parquet + manifest (`shards`),
model directories (`model_dir`), COCO RLE / SA-1B records (`rle`), safetensors weights
(`weights`), class-list and vocabulary files (`vocab`), model specs on the command line (`specs`).
"""
