"""Laminar networking: libp2p host, GossipSub (transactions, consensus), block sync.

The node uses :class:`p2p.service.P2PService` only; see docs/p2p.md.
"""

from .codec import DecodeError, Kind
from .config import BanPolicy, Caps, GossipTuning, P2PConfig
from .gossip import Verdict
from .service import P2PNotRunning, P2PService
from .sync import RemoteError, SyncError

__all__ = [
    "BanPolicy",
    "Caps",
    "DecodeError",
    "GossipTuning",
    "Kind",
    "P2PConfig",
    "P2PNotRunning",
    "P2PService",
    "RemoteError",
    "SyncError",
    "Verdict",
]
