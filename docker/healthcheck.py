"""Docker HEALTHCHECK: exit 0 when the node's JSON-RPC answers eth_blockNumber with a result.

Standard library only. The URL is $LAMINAR_HEALTHCHECK_URL (default http://127.0.0.1:8545),
so a container started with another --rpc port can still be checked.
"""

import json
import os
import sys
import urllib.request

URL = os.environ.get("LAMINAR_HEALTHCHECK_URL", "http://127.0.0.1:8545")


def main() -> int:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}).encode()
    request = urllib.request.Request(URL, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            reply = json.load(response)
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        print(f"unhealthy: {URL}: {exc}", file=sys.stderr)
        return 1
    if isinstance(reply, dict) and isinstance(reply.get("result"), str) and reply["result"].startswith("0x"):
        print(f"healthy: block {int(reply['result'], 16)}")
        return 0
    print(f"unhealthy: {URL} answered {reply!r}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
