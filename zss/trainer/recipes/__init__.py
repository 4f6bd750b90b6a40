"""Built-in training recipes; importing this package registers them (see base.register)."""

from zss.trainer.recipes import simzss  # noqa: F401
from zss.trainer.recipes import pixelclip  # noqa: F401
