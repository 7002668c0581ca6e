"""The Cascade operator: LiveStream resources reconciled into transcoder pods.

The pure core lives here (settings, manifest builders, status conditions, capacity
planning): dicts in, dicts out, no kopf or Kubernetes client imports, so it is
golden-tested without a cluster. The kopf handlers (a thin shell) import it.
"""
