"""The contracts between the parts: the LiveStream spec (and the CRD made from it), the
Redis keys and schema both sides use, the settings every program reads, the on-demand rule."""
