"""Persistent libp2p identity: an Ed25519 key in the node's data dir.

The file holds the libp2p protobuf encoding of the private key (the same format as
go-libp2p's ``identity.PrivKey``). It is created atomically: written to a temporary
file in the same directory with mode 0600, fsynced, renamed over the final name, and
the directory is fsynced, so a crash leaves either no key or a complete key.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.serialization import deserialize_private_key
from libp2p.peer.id import ID

from storage.files import write_secret_file

log = logging.getLogger(__name__)

MAX_KEY_FILE_SIZE = 4096


class IdentityError(Exception):
    """The key file exists but cannot be used (corrupt, wrong permissions...)."""


def load_key_pair(path: Path) -> KeyPair:
    try:
        st = path.stat()
        if st.st_size > MAX_KEY_FILE_SIZE:
            raise IdentityError(f"{path}: key file too large ({st.st_size} bytes)")
        if stat.S_IMODE(st.st_mode) & 0o077:
            log.warning("%s is readable by group/others; fixing mode to 0600", path)
            os.chmod(path, 0o600)
        data = path.read_bytes()
        private_key = deserialize_private_key(data)
    except IdentityError:
        raise
    except OSError as exc:
        raise IdentityError(f"{path}: cannot read key file: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - protobuf / key-type errors
        raise IdentityError(f"{path}: corrupt key file: {exc}") from exc
    return KeyPair(private_key, private_key.get_public_key())


def load_or_create_key_pair(path: Path) -> KeyPair:
    """Load the key at ``path``, or create (atomically) a new Ed25519 key there."""
    path = Path(path)
    if path.exists():
        return load_key_pair(path)
    key_pair = create_new_key_pair()
    if write_secret_file(path, key_pair.private_key.serialize()):
        log.info("created p2p identity %s in %s", peer_id_of(key_pair), path)
    # Return what is on disk: if another process won the race, we use its key.
    return load_key_pair(path)


def peer_id_of(key_pair: KeyPair) -> ID:
    return ID.from_pubkey(key_pair.public_key)
