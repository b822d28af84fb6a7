"""Backends: every model behind one contract (:class:`~promptseg.backends.base.Backend`)."""

from promptseg.backends.base import Backend
from promptseg.backends.registry import BackendSpec, BackendStatus, check_backend, list_backends, load_backend

__all__ = ["Backend", "BackendSpec", "BackendStatus", "check_backend", "list_backends", "load_backend"]
