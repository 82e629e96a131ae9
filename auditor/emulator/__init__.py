"""An ARM-compatible HTTPS emulator that serves an estate (a snapshot) to the real Azure SDK clients."""

from .faults import Faults
from .server import Emulator, RequestRecord, serve

__all__ = ["Emulator", "Faults", "RequestRecord", "serve"]
