"""The ingest stages, pure callables over dict-of-numpy batches (unit-tested without Ray; the
runner's workers chain them): `decode` (bytes -> resized image, source masks rescaled), `features`
(frozen backbone patch grid + global token), `masks` (sam | sa1b | feature-kmeans | dino | none), `concepts`
(caption parsing against the concept bank)."""
