"""Laminar networking: libp2p host, GossipSub (transactions, consensus), block sync.

The node uses :class:`p2p.service.P2PService` only; see docs/p2p.md.
"""

from p2p.codec import DecodeError, Kind
from p2p.config import BanPolicy, Caps, GossipTuning, P2PConfig
from p2p.gossip import Verdict
from p2p.service import P2PNotRunning, P2PService
from p2p.sync import RemoteError, SyncError

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
