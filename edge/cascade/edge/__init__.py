"""The edge: serves LL-HLS from an in-memory live window filled from Redis."""
