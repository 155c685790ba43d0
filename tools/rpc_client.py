"""The load tools' JSON-RPC client over HTTP (`laminar load`, `laminar load --presign`)."""

from __future__ import annotations

from typing import Optional

HTTP_TIMEOUT_S = 10.0


class LoadError(Exception):
    """Unusable input or an unreachable node: exit 2 with this message."""


class Rpc:
    """A JSON-RPC client over one keep-alive HTTP session (one per thread)."""

    def __init__(self, url: str) -> None:
        import requests

        self.url = url
        self.session = requests.Session()

    def call(self, method: str, *params):
        reply = self.session.post(
            self.url,
            json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
            timeout=HTTP_TIMEOUT_S,
        ).json()
        if "error" in reply:
            raise RpcError(reply["error"].get("message", str(reply["error"])))
        return reply["result"]

    def batch(self, calls: list[tuple[str, list]]) -> list:
        out = []
        for start in range(0, len(calls), 100):
            chunk = calls[start : start + 100]
            replies = self.session.post(
                self.url,
                json=[{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(chunk)],
                timeout=HTTP_TIMEOUT_S,
            ).json()
            by_id = {r.get("id"): r for r in replies}
            out.extend(by_id.get(i, {}).get("result") for i in range(len(chunk)))
        return out


class RpcError(Exception):
    pass


def percentile(values: list[float], q: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]
