"""An ARM-compatible HTTPS emulator that serves an estate (a snapshot) to the real Azure SDK clients."""

from .decoys import BlackHole, Decoy, DecoyHit
from .faults import Faults
from .routes import ARM_WHOLE_LISTS
from .server import Emulator, RequestRecord, serve

__all__ = ["ARM_WHOLE_LISTS", "BlackHole", "Decoy", "DecoyHit", "Emulator", "Faults", "RequestRecord", "serve"]
