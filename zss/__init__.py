"""zss: open-vocabulary semantic segmentation without dense labels, on cached features."""

from zss.errors import ZssError

__version__ = "0.1.0"
__all__ = ["ZssError", "__version__"]
