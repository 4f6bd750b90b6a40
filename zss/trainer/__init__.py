"""The one training loop every recipe shares, and what it reads and writes.

- `loop`: `train`: AdamW, warm-up + cosine schedule, AMP, accumulation, DDP, checkpoints, resume, metrics
- `recipe`: the `Recipe` interface, everything recipe-specific the loop needs
- `config`: `TrainConfig`, the loop's knobs plus the recipe's own section
- `data`: the shard stream: reproducible, resumable, shuffled batches from the cached shards
- `damage`: damaged shards met while training: what counts as damage, and the ledger of what it cost
- `slabs`: the shared-memory slab transport of batches from data-loader workers
- `collate`: `stack`, the fast CPU collation the recipes' collate functions use
- `checkpoints`: weights in safetensors, training state in a weights-only-loadable file
- `distributed`: DDP set-up under torchrun and gathers that keep gradients
"""
