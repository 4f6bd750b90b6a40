"""Small shared helpers: config, progress, hashing, device."""
