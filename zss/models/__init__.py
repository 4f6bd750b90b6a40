"""Frozen networks and their loaders, and the `Segmenter` interface inference runs on.

- `backbone`: frozen vision backbones (timm ViT, DINOv2, dense OpenCLIP) behind one interface
- `clip_dense`: dense OpenCLIP (per-location features + text tower) and the MaskCLIP baseline segmenter
- `sam`: Segment Anything from local checkpoints, with its automatic mask generator
- `denoiser`: the DVT feature denoiser SimZSS's release puts on its frozen ViT
- `tokenizer`: CLIP BPE tokenisation that also maps character spans to token positions
- `random_init`: random-weight twins of the real models for tests and the offline demo
- `segmenter`: the `Segmenter` interface (and its optional span pooling)
"""
