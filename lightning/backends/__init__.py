"""Backend selection: `LIGHTNING_BACKEND=devnode|lnd`, one backend object per process."""

import threading

from django.conf import settings

from .base import LightningBackend

_lock = threading.Lock()
_backend: LightningBackend | None = None

BACKENDS = ("devnode", "lnd")


def get_backend() -> LightningBackend:
    global _backend
    with _lock:
        if _backend is None:
            _backend = _make(settings.LIGHTNING_BACKEND)
        return _backend


def reset_backend() -> None:
    """Drop the process's backend (tests switch backends; settings changed)."""
    global _backend
    with _lock:
        if _backend is not None:
            _backend.close()
        _backend = None


def _make(name: str) -> LightningBackend:
    if name == "devnode":
        from .devnode import DevNodeBackend

        return DevNodeBackend()
    if name == "lnd":
        from .lnd import LndBackend

        return LndBackend.from_settings()
    raise ValueError(f"LIGHTNING_BACKEND must be one of {', '.join(BACKENDS)}, not {name!r}")
