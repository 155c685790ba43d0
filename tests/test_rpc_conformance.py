"""Schema conformance with ethereum/execution-apis: every result the node gives for the
spec's methods validates against the spec's result schema.

One dev node is driven through a chain with every transaction type the node accepts
(legacy, EIP-2930, EIP-1559, EIP-7702), a contract deployment, logs and a reverted
transaction; the blob transaction the chain's policy refuses must be refused clearly.
Then every served method of the spec (src/eth, src/debug, src/txpool, src/testing) is
called with real params from that chain and its result validated, with the `$ref`s
resolved into src/schemas through a `referencing` registry. A violation is reported
with the method, the params, the schema path and the failing part of the result.

The spec's own request vectors (tests/<method>/*.io) are replayed too: those that
expect invalid params must get -32602 here as well, and a request the spec answers with
a result must not be refused as malformed (-32602), unknown (-32601) or crash (-32603)
here; when it gets a result, that result must validate too. Their answers otherwise
depend on the spec's own chain (its blocks, accounts and contracts), so values are not
compared.

The spec lives in /work/shared/conformance/execution-apis (CI has it; override with
LAMINAR_EXECUTION_APIS); without it the module is skipped, saying so.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest
from conftest import DEV_KEYS, start_node
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from rpc_client import CHAIN_ID, GWEI, TRANSFER_GAS, Rpc

SPEC_DIR = Path(os.environ.get("LAMINAR_EXECUTION_APIS", "/work/shared/conformance/execution-apis"))
SPEC_NAMESPACES = ("eth", "debug", "txpool", "testing")
SPEC_URI = "urn:execution-apis"

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")

if not (SPEC_DIR / "src" / "schemas").is_dir():
    pytest.skip(
        f"the execution-apis specification is not at {SPEC_DIR} (set LAMINAR_EXECUTION_APIS)",
        allow_module_level=True,
    )

# Methods of the spec this node does not serve yet, each with why. Other branches add
# most of them: remove a name when its method is served (the test says which).
NOT_YET_SERVED: dict[str, str] = {
    "testing_buildBlockV1": "builds a block outside consensus: Laminar's blocks come only "
    "from its engine (and it takes Engine API payload attributes this node has no use for)",
}
# Served, but by design they never return a result: the node holds no keys. Checked for
# geth's error instead of a schema.
ALWAYS_REFUSED: dict[str, str] = {
    "eth_sign": "unknown account",
    "eth_signTransaction": "unknown account",
}
INVALID_PARAMS = -32602
METHOD_NOT_FOUND = -32601
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000
# Calls made first where a method needs them: eth_sendTransaction sends only from an
# impersonated account (the node holds no keys), once the dev methods are served.
PREPARATION: dict[str, str] = {"eth_sendTransaction": "anvil_impersonateAccount"}
# A request the spec answers must not get these: they say the request itself is bad.
MALFORMED_CODES = (INVALID_PARAMS, METHOD_NOT_FOUND, INTERNAL_ERROR)
SHOWN_CHARS = 300
# Spec vectors whose request only makes sense on the spec's own chain, each with why.
CHAIN_DEPENDENT_VECTORS: dict[str, str] = {
    name: "asks for logs up to a block past this chain's head: geth too says -32602 then"
    for name in (
        "eth_getLogs/contract-addr.io", "eth_getLogs/topic-exact-match.io",
        "eth_getLogs/topic-null-wildcard.io", "eth_getLogs/topic-wildcard.io",
    )
}
# Spec vectors the chain's policy refuses on purpose, each with why.
CHAIN_DEPENDENT_VECTORS["eth_simulateV1/ethSimulate-blobs.io"] = (
    "simulates blob transactions: this chain refuses blobs (-32602 in simulate, as for any "
    "field it does not take; eth_sendRawTransaction answers -32000, a transaction it refuses)"
)

DEPLOYER = Account.from_key(DEV_KEYS[0])
SENDER = Account.from_key(DEV_KEYS[1])
OTHER = Account.from_key(DEV_KEYS[2])
QUEUER = Account.from_key(DEV_KEYS[3])
TOKEN_SUPPLY = 10**24
DELEGATION_PREFIX = "0xef0100"  # EIP-7702's delegation designator
QUEUE_GAP = 5  # QUEUER's pooled transaction waits this many nonces ahead: always queued


# ---- the spec ---------------------------------------------------------------------------


@dataclass
class Spec:
    methods: dict[str, dict]  # name -> the method's OpenRPC object
    registry: Any  # referencing.Registry holding the schemas and the methods' results

    def validator(self, method: str):
        return jsonschema.Draft202012Validator(
            {"$ref": f"{SPEC_URI}#/results/{method}"}, registry=self.registry
        )


def load_spec() -> Spec:
    methods: dict[str, dict] = {}
    for namespace in SPEC_NAMESPACES:
        for path in sorted((SPEC_DIR / "src" / namespace).glob("*.yaml")):
            for method in yaml.safe_load(path.read_text()) or []:
                methods[method["name"]] = method
    schemas: dict[str, Any] = {}
    for path in sorted((SPEC_DIR / "src" / "schemas").glob("*.yaml")):
        schemas.update(yaml.safe_load(path.read_text()))
    # One resource: the spec's `#/components/schemas/...` refs resolve inside it.
    document = {
        "components": {"schemas": schemas},
        "results": {name: m["result"]["schema"] for name, m in methods.items() if "result" in m},
    }
    resource = referencing.Resource.from_contents(
        document, default_specification=referencing.jsonschema.DRAFT202012
    )
    return Spec(methods, referencing.Registry().with_resource(SPEC_URI, resource))


@dataclass
class Vector:
    name: str
    request: dict
    response: dict


def load_vectors(method: str) -> list[Vector]:
    """The spec's request/response pairs for `method` (`>>` request, `<<` response)."""
    vectors = []
    for path in sorted((SPEC_DIR / "tests" / method).glob("*.io")):
        request = None
        for line in path.read_text().splitlines():
            if line.startswith(">> "):
                request = json.loads(line[3:])
            elif line.startswith("<< ") and request is not None:
                vectors.append(Vector(f"{method}/{path.name}", request, json.loads(line[3:])))
                request = None
    return vectors


# ---- the chain ---------------------------------------------------------------------------


@dataclass
class Chain:
    """What the conformance calls take their params from."""

    token: str
    tx_hashes: dict[str, str]  # kind -> hash
    receipts: dict[str, dict]
    blocks: list[str] = field(default_factory=list)  # hex numbers with transactions
    block_hashes: list[str] = field(default_factory=list)
    log_filter: str = ""
    block_filter: str = ""
    pending_filter: str = ""


def call_data(signature: str, types: list[str], values: list) -> str:
    return "0x" + (keccak(text=signature)[:4] + abi_encode(types, values)).hex()


def set_code_transaction(rpc: Rpc, delegate_to: str) -> tuple[str, str]:
    """An EIP-7702 transaction: a fresh account delegates to `delegate_to` (the token) and
    SENDER calls it there (a view: the authority's own storage is empty). (hash, authority)"""
    authority = Account.create()
    authorization = Account.sign_authorization(
        {"chainId": CHAIN_ID, "address": delegate_to, "nonce": 0}, authority.key
    )
    return rpc.send(SENDER, {
        "type": 4, "to": authority.address, "value": 0, "gas": 100_000,
        "data": call_data("totalSupply()", [], []), "authorizationList": [authorization], **rpc.fees(),
    }), authority.address


def signed_blob_transaction(account) -> str:
    """A signed EIP-4844 transaction (no sidecar: the pool refuses the type before that)."""
    signed = Account.sign_transaction({
        "type": 3, "chainId": CHAIN_ID, "nonce": 0, "to": SENDER.address, "value": 0,
        "gas": TRANSFER_GAS, "maxFeePerGas": GWEI, "maxPriorityFeePerGas": GWEI,
        "maxFeePerBlobGas": GWEI, "blobVersionedHashes": [b"\x01" + b"\x00" * 31], "data": b"",
    }, account.key)
    return "0x" + signed.raw_transaction.hex()


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    process = start_node(tmp_path_factory.mktemp("conformance"))
    yield process
    process.kill()


@pytest.fixture(scope="module")
def rpc(node) -> Rpc:
    return Rpc.connect(node.url)


@pytest.fixture(scope="module")
def spec() -> Spec:
    return load_spec()


@pytest.fixture(scope="module")
def chain(rpc, erc20) -> Chain:
    hashes: dict[str, str] = {}
    args = abi_encode(["string", "string", "uint8", "uint256"], ["Conformance", "CNF", 18, TOKEN_SUPPLY])
    hashes["deploy"] = rpc.send(DEPLOYER, {"data": erc20.bytecode + args.hex(), "gas": 3_000_000, **rpc.fees()})
    token = rpc.wait(hashes["deploy"])["contractAddress"]
    token = to_checksum_address(token)
    filters = (
        rpc.call("eth_newFilter", {"fromBlock": "0x0", "address": token}),
        rpc.call("eth_newBlockFilter"), rpc.call("eth_newPendingTransactionFilter"),
    )
    hashes["legacy"] = rpc.send(OTHER, {"to": SENDER.address, "value": 1, "gas": TRANSFER_GAS,
                                        "gasPrice": rpc.legacy_price()})
    hashes["access_list"] = rpc.send(OTHER, {
        "type": 1, "to": token, "value": 0, "gas": 100_000, "gasPrice": rpc.legacy_price(),
        "data": call_data("balanceOf(address)", ["address"], [OTHER.address]),
        "accessList": [{"address": token, "storageKeys": ["0x" + "00" * 32]}],
    })
    hashes["dynamic_fee"] = rpc.send(SENDER, {"to": OTHER.address, "value": 2, "gas": TRANSFER_GAS, **rpc.fees()})
    hashes["logs"] = rpc.send(DEPLOYER, {
        "to": token, "gas": 100_000, **rpc.fees(),
        "data": call_data("transfer(address,uint256)", ["address", "uint256"], [OTHER.address, 10**18]),
    })
    hashes["reverted"] = rpc.send(SENDER, {  # SENDER holds no tokens: the transfer reverts
        "to": token, "gas": 100_000, **rpc.fees(),
        "data": call_data("transfer(address,uint256)", ["address", "uint256"], [OTHER.address, 1]),
    })
    hashes["set_code"], authority = set_code_transaction(rpc, token)
    receipts = {kind: rpc.wait(h) for kind, h in hashes.items()}
    assert receipts["reverted"]["status"] == "0x0"
    failed = {kind: r["status"] for kind, r in receipts.items() if kind != "reverted" and r["status"] != "0x1"}
    assert not failed, failed
    assert receipts["logs"]["logs"], "the token transfer logs Transfer"
    delegation = rpc.call("eth_getCode", authority, "latest")
    assert delegation == DELEGATION_PREFIX + token[2:].lower(), "EIP-7702 delegation in place"
    # A transaction that waits behind a nonce gap, so the pool has a queued part.
    queued_nonce = int(rpc.call("eth_getTransactionCount", QUEUER.address, "latest"), 16) + QUEUE_GAP
    rpc.send(QUEUER, {"to": SENDER.address, "value": 1, "gas": TRANSFER_GAS, "nonce": queued_nonce, **rpc.fees()})
    numbers = sorted({r["blockNumber"] for r in receipts.values()}, key=lambda n: int(n, 16))
    result = Chain(token, hashes, receipts, numbers,
                   [rpc.call("eth_getBlockByNumber", n, False)["hash"] for n in numbers])
    result.log_filter, result.block_filter, result.pending_filter = filters
    return result


def conformance_calls(chain: Chain) -> list[tuple[str, list]]:
    """(method, params) for every spec method: real params from the chain built above."""
    token, deployer, other = chain.token, DEPLOYER.address, OTHER.address
    latest_ref = [{"blockHash": chain.block_hashes[-1]}]
    tx = chain.tx_hashes
    receipt = chain.receipts
    transfer_call = {"from": deployer, "to": token,
                     "input": call_data("transfer(address,uint256)", ["address", "uint256"], [other, 5])}
    calls: list[tuple[str, list]] = [
        ("eth_accounts", []), ("eth_blockNumber", []), ("eth_chainId", []), ("eth_coinbase", []),
        ("eth_syncing", []), ("net_version", []), ("eth_gasPrice", []),
        ("eth_maxPriorityFeePerGas", []), ("eth_baseFee", []), ("eth_blobBaseFee", []),
        ("eth_config", []), ("eth_capabilities", []),
        ("eth_getBalance", [deployer, "latest"]), ("eth_getBalance", [deployer, "0x0"]),
        ("eth_getBalance", [deployer, *latest_ref]),
        ("eth_getCode", [token, "latest"]), ("eth_getCode", [deployer, "latest"]),
        ("eth_getStorageAt", [token, "0x0", "latest"]),
        ("eth_getStorageValues", [{token: ["0x0", "0x1"], other: ["0x0"]}, "latest"]),
        ("eth_getTransactionCount", [deployer, "latest"]),
        ("eth_getTransactionCount", [QUEUER.address, "pending"]),
        ("eth_call", [{"to": token, "input": call_data("balanceOf(address)", ["address"], [other])}, "latest"]),
        ("eth_estimateGas", [{"from": deployer, "to": other, "value": "0x1"}]),
        ("eth_estimateGas", [transfer_call, "latest"]),
        ("eth_feeHistory", ["0x4", "latest", [10, 50, 90]]), ("eth_feeHistory", ["0x1", "0x0", []]),
        ("eth_getLogs", [{"fromBlock": "0x0", "toBlock": "latest"}]),
        ("eth_getLogs", [{"address": token, "fromBlock": "0x0"}]),
        ("eth_getLogs", [{"blockHash": receipt["logs"]["blockHash"]}]),
        ("eth_getFilterLogs", [chain.log_filter]), ("eth_getFilterChanges", [chain.log_filter]),
        ("eth_getFilterChanges", [chain.block_filter]), ("eth_getFilterChanges", [chain.pending_filter]),
        ("eth_newFilter", [{"address": token}]), ("eth_newBlockFilter", []),
        ("eth_newPendingTransactionFilter", []),
        ("txpool_status", []), ("txpool_content", []), ("txpool_contentFrom", [QUEUER.address]),
        ("txpool_contentFrom", [deployer]),
        ("eth_fillTransaction", [{"from": deployer, "to": other, "value": "0x1"}]),
        ("eth_fillTransaction", [{"from": deployer, "to": other, "gasPrice": hex(2 * GWEI)}]),
        ("eth_fillTransaction", [{**transfer_call, "gasPrice": hex(2 * GWEI),
                                  "accessList": [{"address": token, "storageKeys": []}]}]),
        ("eth_fillTransaction", [{**transfer_call, "authorizationList": [
            {"chainId": hex(CHAIN_ID), "address": token, "nonce": "0x0", "yParity": "0x1",
             "r": "0x1", "s": "0x1"}]}]),
        ("debug_getBadBlocks", []),
        ("eth_getProof", [token, ["0x0"], "latest"]),
        ("eth_createAccessList", [transfer_call, "latest"]),
        ("eth_simulateV1", [{"blockStateCalls": [{"calls": [transfer_call]}]}, "latest"]),
        ("debug_traceTransaction", [tx["logs"]]),
    ]
    for number, block_hash in zip(["0x0", *chain.blocks], [None, *chain.block_hashes]):
        for full in (False, True):
            calls.append(("eth_getBlockByNumber", [number, full]))
            if block_hash:
                calls.append(("eth_getBlockByHash", [block_hash, full]))
        calls += [
            ("eth_getBlockTransactionCountByNumber", [number]),
            ("eth_getBlockReceipts", [number]), ("eth_getBlockAccessList", [number]),
            ("debug_getRawHeader", [number]), ("debug_getRawBlock", [number]),
            ("debug_getRawReceipts", [number]), ("debug_getRawBlockAccessList", [number]),
        ]
        if block_hash:
            calls += [
                ("eth_getBlockTransactionCountByHash", [block_hash]),
                ("eth_getBlockReceipts", [{"blockHash": block_hash}]),
                ("debug_traceBlockByNumber", [number]), ("debug_traceBlockByHash", [block_hash]),
            ]
    for tag in ("latest", "earliest", "pending", "safe", "finalized", "0xffffff"):
        calls.append(("eth_getBlockByNumber", [tag, False]))
    calls.append(("eth_getBlockByHash", ["0x" + "ab" * 32, False]))
    for kind, tx_hash in tx.items():
        r = receipt[kind]
        calls += [
            ("eth_getTransactionByHash", [tx_hash]), ("eth_getTransactionReceipt", [tx_hash]),
            ("eth_getTransactionByBlockHashAndIndex", [r["blockHash"], r["transactionIndex"]]),
            ("eth_getTransactionByBlockNumberAndIndex", [r["blockNumber"], r["transactionIndex"]]),
            ("debug_getRawTransaction", [tx_hash]),
        ]
    calls += [
        ("eth_getTransactionByHash", ["0x" + "ab" * 32]), ("eth_getTransactionReceipt", ["0x" + "ab" * 32]),
        ("eth_sendRawTransaction", [FreshTransfer(OTHER)]),
        ("eth_sendTransaction", [{"from": deployer, "to": other, "value": "0x1"}]),
        ("eth_uninstallFilter", [chain.block_filter]),
    ]
    return calls


@dataclass(frozen=True)
class FreshTransfer:
    """A param signed when the call is made: a transfer from `account` with its current
    pending nonce (for eth_sendRawTransaction)."""

    account: Any


# ---- checking ---------------------------------------------------------------------------


def shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def spec_ambiguity(error) -> bool:
    """An empty array under a `oneOf` of arrays (eth_getFilterChanges: logs or hashes)
    matches every branch, so `oneOf` can never pass it: the spec's schema, not the
    result, is at fault there."""
    return error.validator == "oneOf" and error.instance == [] and all(
        branch.get("type") == "array" for branch in error.validator_value
    )


def violations_of(spec: Spec, method: str, params: list, result: Any) -> list[str]:
    found = []
    for error in spec.validator(method).iter_errors(result):
        if spec_ambiguity(error):
            continue
        found.append(
            f"{method} {shown(params)}: {error.message[:SHOWN_CHARS]} "
            f"(schema path {'/'.join(str(p) for p in error.absolute_schema_path)}, "
            f"at result{error.json_path[1:]}: {shown(error.instance)})"
        )
    return found


def served(rpc: Rpc, method: str) -> bool:
    reply = rpc.request(method, [])
    return reply.get("error", {}).get("code") != METHOD_NOT_FOUND


def resolve(rpc: Rpc, params: list) -> list:
    resolved = []
    for param in params:
        if isinstance(param, FreshTransfer):
            account = param.account
            nonce = int(rpc.call("eth_getTransactionCount", account.address, "pending"), 16)
            signed = Account.sign_transaction({
                "chainId": CHAIN_ID, "nonce": nonce, "to": SENDER.address, "value": 1,
                "gas": TRANSFER_GAS, **rpc.fees()}, account.key)
            param = "0x" + signed.raw_transaction.hex()
        resolved.append(param)
    return resolved


# ---- tests ------------------------------------------------------------------------------


def test_every_spec_method_is_served_but_the_named_ones(rpc, spec):
    unserved = {name for name in spec.methods if not served(rpc, name)}
    now_served = sorted(set(NOT_YET_SERVED) - unserved)
    assert not now_served, f"served now: remove {now_served} from NOT_YET_SERVED"
    assert unserved == set(NOT_YET_SERVED), f"not served: {sorted(unserved - set(NOT_YET_SERVED))}"


def test_blob_transactions_are_refused_clearly(rpc):
    error = rpc.error("eth_sendRawTransaction", signed_blob_transaction(Account.create()))
    assert error["code"] == SERVER_ERROR
    assert "blob transactions are not supported" in error["message"]


def test_every_result_validates_against_the_spec(rpc, spec, chain):
    calls = conformance_calls(chain)
    is_served = {name: served(rpc, name) for name in spec.methods}
    called = {method for method, _ in calls}
    uncovered = sorted(
        name for name, yes in is_served.items() if yes and name not in called and name not in ALWAYS_REFUSED
    )
    assert not uncovered, f"served spec methods without a conformance call: {uncovered}"
    violations: list[str] = []
    checked = 0
    for method, params in calls:
        assert method in spec.methods, f"{method} is not a method of the spec"
        if not is_served[method]:
            continue
        params = resolve(rpc, params)
        if method in PREPARATION and served(rpc, PREPARATION[method]):
            rpc.call(PREPARATION[method], params[0]["from"])
        reply = rpc.request(method, params)
        if "error" in reply:
            violations.append(f"{method} {shown(params)}: error {reply['error']}")
            continue
        violations.extend(violations_of(spec, method, params, reply["result"]))
        checked += 1
    assert not violations, f"{len(violations)} violations in {checked} results:\n" + "\n".join(violations)


def test_the_schemas_catch_a_bad_result(spec):
    """The validation is not vacuous: results of the wrong shape are violations."""
    assert violations_of(spec, "eth_blockNumber", [], "0x01")  # a leading zero
    assert violations_of(spec, "eth_getBalance", [], 5)
    assert violations_of(spec, "txpool_status", [], {"pending": "0x1"})
    assert violations_of(spec, "eth_getBlockByNumber", [], {"number": "0x1"})
    assert not violations_of(spec, "eth_blockNumber", [], "0x10")


def test_refusing_methods_answer_geths_error(rpc, spec):
    for method, message in ALWAYS_REFUSED.items():
        example = spec.methods[method]["examples"][0]
        params = [p["value"] for p in example["params"]]
        assert rpc.error(method, *params) == {"code": SERVER_ERROR, "message": message}


def test_spec_vectors_get_the_same_kind_of_answer(rpc, spec):
    problems: list[str] = []
    replayed = validated = 0
    for method in sorted(spec.methods):
        if method in NOT_YET_SERVED and not served(rpc, method):
            continue
        for vector in load_vectors(method):
            if vector.name in CHAIN_DEPENDENT_VECTORS:
                continue
            params = vector.request.get("params")
            reply = rpc.request(method, params)
            expected: Optional[dict] = vector.response.get("error")
            replayed += 1
            if expected is not None:
                if expected["code"] == INVALID_PARAMS:
                    got = reply.get("error", {}).get("code")
                    if got != INVALID_PARAMS:
                        problems.append(f"{vector.name}: want -32602, got {shown(reply)}")
                continue
            if "error" in reply:
                if reply["error"]["code"] in MALFORMED_CODES:
                    problems.append(f"{vector.name}: a valid request refused: {shown(reply['error'])}")
                continue
            problems.extend(
                f"{vector.name}: {v}" for v in violations_of(spec, method, params or [], reply["result"])
            )
            validated += 1
    assert replayed > 0 and validated > 0
    print(f"{replayed} spec vectors replayed, {validated} results validated")
    assert not problems, f"{len(problems)} of {replayed} vectors:\n" + "\n".join(problems)
