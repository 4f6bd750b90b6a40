"""`zss serve`: a local web page to segment an image with any words (layer: commands)."""
