"""QE python-worker platform: workers on a NATS-based Nexus.

The worker SDK lives in :mod:`qe.bridge`; the test kit in :mod:`qe.testing`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
