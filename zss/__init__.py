"""zss: open-vocabulary semantic segmentation without dense labels, on cached features.

Layer order (lowest first; imports only go down, siblings of one layer never import each other;
tests/test_architecture.py enforces it, docs/architecture.md maps it):

    0 errors, paths, utils  <  1 formats  <  2 models  <  3 ingest | trainer | synth
      <  4 recipes (simzss, pixelclip)  <  5 eval  <  6 commands  <  7 cli
"""

from zss.errors import ZssError

__version__ = "0.1.0"
__all__ = ["ZssError", "__version__"]
