"""JSON-RPC 2.0 error codes and the :class:`RpcError` exception.

Handlers registered on :class:`node.rpc.server.Methods` raise :class:`RpcError`
to return a JSON-RPC error object; any other exception becomes
``INTERNAL_ERROR``. Codes and messages follow geth where geth has a convention.
"""

from __future__ import annotations

from typing import Any

# JSON-RPC 2.0 standard codes
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# Server-defined range (-32000..-32099); geth uses -32000 for most chain errors
# ("nonce too low", "insufficient funds for gas * price + value", ...).
SERVER_ERROR = -32000
RESOURCE_NOT_FOUND = -32001
TRANSACTION_REJECTED = -32003
LIMIT_EXCEEDED = -32005

# geth: eth_call / eth_estimateGas revert -> code 3, message
# "execution reverted: <reason>", data = 0x-hex revert data.
EXECUTION_REVERTED = 3


class RpcError(Exception):
    """An error to be returned to the client as a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = int(code)
        self.message = str(message)
        self.data = data

    def to_json(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err

    def __repr__(self) -> str:
        return f"RpcError({self.code}, {self.message!r}, data={self.data!r})"


def parse_error(message: str = "parse error") -> RpcError:
    return RpcError(PARSE_ERROR, message)


def invalid_request(message: str = "invalid request") -> RpcError:
    return RpcError(INVALID_REQUEST, message)


def method_not_found(method: str) -> RpcError:
    # geth's wording
    return RpcError(METHOD_NOT_FOUND, f"the method {method} does not exist/is not available")


def invalid_params(message: str, data: Any = None) -> RpcError:
    return RpcError(INVALID_PARAMS, message, data)


def internal_error(message: str = "internal error") -> RpcError:
    return RpcError(INTERNAL_ERROR, message)


def server_error(message: str, data: Any = None) -> RpcError:
    """geth-style generic error (-32000), e.g. ``server_error("nonce too low")``."""
    return RpcError(SERVER_ERROR, message, data)


def limit_exceeded(message: str) -> RpcError:
    return RpcError(LIMIT_EXCEEDED, message)


def notifications_not_supported() -> RpcError:
    # geth: ErrNotificationsUnsupported, code -32601
    return RpcError(METHOD_NOT_FOUND, "notifications not supported")


def execution_reverted(revert_data: bytes | str | None = None, reason: str | None = None) -> RpcError:
    """geth-compatible revert error.

    ``revert_data`` is the raw revert output (bytes or 0x-hex); ``reason`` is the
    decoded ``Error(string)`` message if any. Message is ``"execution reverted"``
    or ``"execution reverted: <reason>"``; data is the 0x-hex revert data (omitted
    when there is none, like geth).
    """
    if isinstance(revert_data, (bytes, bytearray, memoryview)):
        data_hex: str | None = "0x" + bytes(revert_data).hex()
    else:
        data_hex = revert_data
    if data_hex in ("0x", ""):
        data_hex = None
    message = "execution reverted" if not reason else f"execution reverted: {reason}"
    return RpcError(EXECUTION_REVERTED, message, data_hex)


__all__ = [
    "PARSE_ERROR",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "INVALID_PARAMS",
    "INTERNAL_ERROR",
    "SERVER_ERROR",
    "RESOURCE_NOT_FOUND",
    "TRANSACTION_REJECTED",
    "LIMIT_EXCEEDED",
    "EXECUTION_REVERTED",
    "RpcError",
    "parse_error",
    "invalid_request",
    "method_not_found",
    "invalid_params",
    "internal_error",
    "server_error",
    "limit_exceeded",
    "notifications_not_supported",
    "execution_reverted",
]
