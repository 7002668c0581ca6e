"""Core contracts shared by every part: the LiveStream spec, Redis keys and schema, settings."""
