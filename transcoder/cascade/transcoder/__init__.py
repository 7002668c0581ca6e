"""The transcoder: the program of the GPU pod (FFmpeg + Cascade's LL-HLS packager)."""
