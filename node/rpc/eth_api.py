"""The eth_, net_, web3_ and laminar_ JSON-RPC methods, over the chain and the mempool.

Handlers read committed data only (blocks are final once committed) and hand new
transactions to the mempool; they never write to storage. Heavy work (EVM calls, log
scans) runs in a worker thread so the event loop keeps serving.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

import trio
from eth.abc import BlockAPI, BlockHeaderAPI
from eth.vm.forks.cancun.state import MIN_BLOB_BASE_FEE, fake_exponential
from eth.vm.forks.london.headers import calculate_expected_base_fee_per_gas
from eth.vm.forks.prague.constants import (
    BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE,
    TARGET_BLOB_GAS_PER_BLOCK,
)
from eth_bloom import BloomFilter

from consensus.certificate import CommitCertificate, InvalidCertificateError
from execution.bal.codec import access_list_json
from execution.call import CallError, CallRequest, EstimateFailed, call, estimate_gas
from execution.tracing.call_tracer import decode_revert_reason
from node.admission import AdmissionWorkers, check_all
from node.chain import Chain
from node.config import RpcSettings
from node.mempool import Mempool, MempoolError, PooledTx
from node.rpc import encoding, params
from node.rpc.errors import (
    RpcError,
    execution_reverted,
    invalid_params,
    limit_exceeded,
    server_error,
)
from node.rpc.filters import FilterManager, LogCriteria, parse_log_criteria
from node.rpc.server import Methods
from node.rpc.subscriptions import SubscriptionHub

log = logging.getLogger(__name__)

CLIENT_VERSION = f"Laminar/v0.1.0/{platform.system().lower()}/python{platform.python_version()}"
GWEI = 10**9
DEFAULT_PRIORITY_FEE = 1 * GWEI  # suggested tip when recent blocks carry no transactions
FEE_HISTORY_MAX_BLOCKS = 1024
TIP_SAMPLE_BLOCKS = 20
PERCENT = 100
# eth_getStorageValues: slots per request over all addresses (our cap: the spec names none).
MAX_STORAGE_VALUES_SLOTS = 1024


def next_blob_base_fee(head: BlockHeaderAPI) -> int:
    """EIP-4844's fee from the excess blob gas the child of `head` will carry; Laminar
    refuses blob transactions, so the excess stays 0 and the fee at its minimum."""
    excess = max(0, head.excess_blob_gas + head.blob_gas_used - TARGET_BLOB_GAS_PER_BLOCK)
    return fake_exponential(MIN_BLOB_BASE_FEE, excess, BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE)


@dataclass
class EthApi:
    chain: Chain
    mempool: Mempool
    settings: RpcSettings
    filters: FilterManager
    validators: tuple[bytes, ...]
    # Gossips an accepted raw transaction to peers (None: no networking).
    broadcast: Optional[Callable[[bytes], Awaitable[None]]] = None
    # The engine's consensus state (laminar_consensusState).
    consensus_state: Optional[Callable[[], dict]] = None
    p2p: Optional[Any] = None
    # Called with every transaction that enters the pool (from a wallet or a peer).
    pending_listeners: list[Callable[[PooledTx], object]] = field(default_factory=list)
    # Checks batches of raw transactions in worker processes (None: on this thread).
    admission: Optional[AdmissionWorkers] = None

    def on_pending_transaction(self, pooled: PooledTx) -> None:
        """A transaction entered the pool: pending filters and subscriptions see it."""
        self.filters.on_pending_transaction(pooled.hash)
        for listener in self.pending_listeners:
            listener(pooled)

    # ---- block resolution -----------------------------------------------------------

    def _header(self, ref: Any) -> Optional[BlockHeaderAPI]:
        if isinstance(ref, tuple):
            return self.chain.header_by_hash(ref[1])
        if ref == "earliest":
            return self.chain.header_by_number(0)
        if isinstance(ref, str):  # latest, pending, safe, finalized: instant finality
            return self.chain.head
        return self.chain.header_by_number(ref)

    def _require_header(self, raw: Any) -> BlockHeaderAPI:
        header = self._header(params.block_ref(raw))
        if header is None:
            raise server_error("header not found")
        return header

    def _block(self, header: BlockHeaderAPI) -> BlockAPI:
        block = self.chain.block_by_hash(header.hash)
        if block is None:
            raise server_error("block not found")
        return block

    # ---- simple reads ---------------------------------------------------------------

    def chain_id(self) -> str:
        return encoding.quantity(self.chain.chain_id)

    def net_version(self) -> str:
        return str(self.chain.chain_id)

    def net_listening(self) -> bool:
        return True

    def net_peer_count(self) -> str:
        return encoding.quantity(len(self.p2p.connected_peers()) if self.p2p is not None else 0)

    def client_version(self) -> str:
        return CLIENT_VERSION

    def syncing(self) -> bool:
        return False

    def accounts(self) -> list:
        return []

    def block_number(self) -> str:
        return encoding.quantity(self.chain.head.block_number)

    def get_balance(self, address: Any, block: Any = None) -> str:
        header = self._require_header(block)
        return encoding.quantity(
            self.chain.state_at(header).get_balance(params.address(address, "address"))
        )

    def get_transaction_count(self, address: Any, block: Any = None) -> str:
        sender = params.address(address, "address")
        if block == "pending":
            return encoding.quantity(self.mempool.pending_nonce(sender))
        header = self._require_header(block)
        return encoding.quantity(self.chain.state_at(header).get_nonce(sender))

    def get_code(self, address: Any, block: Any = None) -> str:
        header = self._require_header(block)
        return encoding.data(self.chain.state_at(header).get_code(params.address(address, "address")))

    def get_storage_at(self, address: Any, slot: Any, block: Any = None) -> str:
        header = self._require_header(block)
        value = self.chain.state_at(header).get_storage(
            params.address(address, "address"), params.storage_slot(slot, "slot")
        )
        return "0x" + value.to_bytes(32, "big").hex()

    def get_storage_values(self, requests: Any, block: Any = None) -> dict[str, list[str]]:
        """Many slots of many accounts at one block; keys come back as the client spelled
        them (the spec's vectors echo lower-case input), values as 32-byte words."""
        if not isinstance(requests, dict):
            raise invalid_params("requests: expected an object of address to storage keys")
        if not requests:
            raise invalid_params("empty request")
        parsed: list[tuple[str, bytes, list[int]]] = []
        total = 0
        for key, slots in requests.items():
            account = params.address(key, "address")
            if not isinstance(slots, list):
                raise invalid_params(f"{key}: expected an array of storage keys")
            total += max(1, len(slots))  # an address without slots still costs a lookup
            if total > MAX_STORAGE_VALUES_SLOTS:
                raise invalid_params(
                    f"too many slots: at most {MAX_STORAGE_VALUES_SLOTS} per request"
                )
            parsed.append((key, account, [params.storage_slot(s, "slot") for s in slots]))
        state = self.chain.state_at(self._require_header(block))
        return {
            key: ["0x" + state.get_storage(account, slot).to_bytes(32, "big").hex() for slot in slots]
            for key, account, slots in parsed
        }

    def coinbase(self) -> str:
        """The fee recipient of the blocks this node proposes: Laminar's validators propose
        with the zero address (tips accrue to it), as every block's `miner` shows."""
        return encoding.data(self.chain.head.coinbase)

    # ---- blocks and transactions ----------------------------------------------------

    def get_block_by_number(self, block: Any, full: Any) -> Optional[dict]:
        header = self._header(params.block_ref(block))
        if header is None:
            return None
        return encoding.encode_block(self._block(header), params.boolean(full, "full"))

    def get_block_by_hash(self, block_hash: Any, full: Any) -> Optional[dict]:
        header = self.chain.header_by_hash(params.hash32(block_hash, "blockHash"))
        if header is None:
            return None
        return encoding.encode_block(self._block(header), params.boolean(full, "full"))

    def get_block_access_list(self, block: Any) -> Optional[list]:
        """EIP-7928's list of a block (execution-apis eth_getBlockAccessList)."""
        header = self._header(params.block_ref(block))
        if header is None:
            return None
        return access_list_json(self.chain.access_list(self._block(header)))

    def get_raw_block_access_list(self, block: Any) -> Optional[str]:
        """The list's RLP (execution-apis debug_getRawBlockAccessList)."""
        header = self._header(params.block_ref(block))
        if header is None:
            return None
        return encoding.data(self._block(header).access_list)

    def get_block_transaction_count_by_number(self, block: Any) -> Optional[str]:
        header = self._header(params.block_ref(block))
        if header is None:
            return None
        return encoding.quantity(len(self._block(header).transactions))

    def get_block_transaction_count_by_hash(self, block_hash: Any) -> Optional[str]:
        header = self.chain.header_by_hash(params.hash32(block_hash, "blockHash"))
        if header is None:
            return None
        return encoding.quantity(len(self._block(header).transactions))

    def get_transaction_by_hash(self, tx_hash: Any) -> Optional[dict]:
        raw_hash = params.hash32(tx_hash, "transactionHash")
        location = self.chain.tx_location(raw_hash)
        if location is None:
            pooled = self.mempool.get(raw_hash)
            return encoding.encode_transaction(pooled.tx, None, None) if pooled else None
        block = self.chain.block_by_hash(location.block_hash)
        assert block is not None  # tx_location answers only for a visible committed block
        return encoding.encode_transaction(
            block.transactions[location.index], block.header, location.index
        )

    def get_transaction_by_block_number_and_index(self, block: Any, index: Any) -> Optional[dict]:
        header = self._header(params.block_ref(block))
        return self._transaction_at(header, params.quantity(index, "index"))

    def get_transaction_by_block_hash_and_index(
        self, block_hash: Any, index: Any
    ) -> Optional[dict]:
        header = self.chain.header_by_hash(params.hash32(block_hash, "blockHash"))
        return self._transaction_at(header, params.quantity(index, "index"))

    def _transaction_at(self, header: Optional[BlockHeaderAPI], position: int) -> Optional[dict]:
        """The block's transaction at `position`; null for no block or no such position."""
        if header is None:
            return None
        txs = self._block(header).transactions
        if position >= len(txs):
            return None
        return encoding.encode_transaction(txs[position], header, position)

    def get_block_receipts(self, block: Any) -> Optional[list[dict]]:
        """Every receipt of a block, in order; null for a block this node does not have."""
        header = self._header(params.block_ref(block))
        if header is None:
            return None
        full = self._block(header)
        receipts = self.chain.receipts(header.hash)
        return [encoding.encode_receipt(full, receipts, i) for i in range(len(receipts))]

    def get_transaction_receipt(self, tx_hash: Any) -> Optional[dict]:
        location = self.chain.tx_location(params.hash32(tx_hash, "transactionHash"))
        if location is None:
            return None
        block = self.chain.block_by_hash(location.block_hash)
        return encoding.encode_receipt(
            block, self.chain.receipts(location.block_hash), location.index
        )

    def get_uncle_count(self, _block: Any) -> str:
        return encoding.quantity(0)

    # ---- transactions in ------------------------------------------------------------

    async def send_raw_transaction(self, raw: Any) -> str:
        encoded = params.hex_bytes(raw, "transaction")
        try:
            pooled = self.mempool.add_raw(encoded, self.chain.next_base_fee())
        except MempoolError as exc:
            raise server_error(str(exc)) from None
        return await self._accepted(pooled)

    async def send_raw_transactions(self, calls: list[list[Any]]) -> list[Any]:
        """The batch form of eth_sendRawTransaction: the stateless checks of all the
        calls at once, in the admission workers (`node.admission`), then each call's
        pool admission in order on this thread, answering as the calls one by one."""
        outcomes: list[Any] = []
        raws: list[bytes] = []
        for args in calls:
            try:
                raws.append(params.hex_bytes(args[0], "transaction"))
                outcomes.append(None)
            except RpcError as err:
                outcomes.append(err)
        if self.admission is not None:
            checks = await self.admission.check_many(raws)
        else:
            checks = check_all(self.mempool.checks, raws)
        checked = iter(checks)
        for position, outcome in enumerate(outcomes):
            if outcome is not None:
                continue
            check = next(checked)
            try:
                if isinstance(check, MempoolError):
                    raise check
                pooled = self.mempool.add_checked(check, self.chain.next_base_fee())
            except MempoolError as exc:
                outcomes[position] = server_error(str(exc))
                continue
            outcomes[position] = await self._accepted(pooled)
        return outcomes

    async def _accepted(self, pooled: PooledTx) -> str:
        self.on_pending_transaction(pooled)
        if self.broadcast is not None:
            try:
                await self.broadcast(pooled.raw)
            except Exception:  # it is in our pool; peers will get it from the block
                log.exception("could not gossip transaction 0x%s", pooled.hash.hex())
        return encoding.data(pooled.hash)

    # ---- EVM calls ------------------------------------------------------------------

    def _call_request(self, tx: Any) -> CallRequest:
        fields = params.obj(tx, "transaction")
        data_field = fields.get("input", fields.get("data"))
        return CallRequest(
            sender=params.address(fields["from"], "from") if fields.get("from") else b"\x00" * 20,
            to=params.address(fields["to"], "to") if fields.get("to") else None,
            data=params.hex_bytes(data_field, "input") if data_field is not None else b"",
            value=params.quantity(fields["value"], "value") if fields.get("value") else 0,
            gas=params.quantity(fields["gas"], "gas") if fields.get("gas") else None,
        )

    @staticmethod
    def _failed_call(result) -> RpcError:
        if result.reverted:
            return execution_reverted(result.output, decode_revert_reason(result.output))
        return server_error(result.error or "execution failed")

    async def eth_call(self, tx: Any, block: Any = None) -> str:
        request = self._call_request(tx)
        header = self._require_header(block)
        env, view = self.chain.env_of(header), self.chain.state_view(header)
        try:
            result = await trio.to_thread.run_sync(call, env, view, request, self.settings.gas_cap)
        except CallError as exc:
            raise server_error(str(exc)) from None
        if not result.success:
            raise self._failed_call(result)
        return encoding.data(result.output)

    async def estimate_gas(self, tx: Any, block: Any = None) -> str:
        request = self._call_request(tx)
        header = self._require_header(block)
        env, view = self.chain.env_of(header), self.chain.state_view(header)
        try:
            gas = await trio.to_thread.run_sync(
                estimate_gas, env, view, request, min(self.settings.gas_cap, header.gas_limit)
            )
        except CallError as exc:
            raise server_error(str(exc)) from None
        except EstimateFailed as exc:
            raise self._failed_call(exc.result) from None
        return encoding.quantity(gas)

    # ---- fees -----------------------------------------------------------------------

    def _suggested_tip(self) -> int:
        tips = []
        head = self.chain.head
        for number in range(head.block_number, max(-1, head.block_number - TIP_SAMPLE_BLOCKS), -1):
            header = self.chain.header_by_number(number)
            assert header is not None  # at or below the head
            for tx in self._block(header).transactions:
                paid = encoding.effective_gas_price(tx, header.base_fee_per_gas)
                tips.append(paid - header.base_fee_per_gas)
        if not tips:
            return DEFAULT_PRIORITY_FEE
        tips.sort()
        return max(tips[len(tips) * 60 // PERCENT], 0)

    def base_fee(self) -> str:
        """The base fee per gas of the next block (execution-apis eth_baseFee)."""
        return encoding.quantity(self.chain.next_base_fee())

    def blob_base_fee(self) -> str:
        """The blob base fee of the next block under Prague's rules (EIP-4844/7691)."""
        return encoding.quantity(next_blob_base_fee(self.chain.head))

    def max_priority_fee(self) -> str:
        return encoding.quantity(self._suggested_tip())

    def gas_price(self) -> str:
        return encoding.quantity(self.chain.next_base_fee() + self._suggested_tip())

    def fee_history(self, block_count: Any, newest: Any, percentiles: Any = None) -> dict:
        count = params.quantity(block_count, "blockCount")
        if count < 1:
            raise invalid_params("blockCount: must be at least 1")
        count = min(count, FEE_HISTORY_MAX_BLOCKS)
        newest_header = self._require_header(newest)
        if percentiles is not None:
            if not isinstance(percentiles, list) or not all(
                isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= PERCENT
                for p in percentiles
            ) or percentiles != sorted(percentiles):
                raise invalid_params("rewardPercentiles: an increasing list of numbers in 0..100")
        oldest = max(0, newest_header.block_number - count + 1)
        base_fees, ratios, rewards = [], [], []
        for number in range(oldest, newest_header.block_number + 1):
            header = self.chain.header_by_number(number)
            assert header is not None  # at or below the head
            base_fees.append(encoding.quantity(header.base_fee_per_gas))
            ratios.append(header.gas_used / header.gas_limit)
            if percentiles is not None:
                rewards.append(self._block_rewards(header, percentiles))
        base_fees.append(encoding.quantity(calculate_expected_base_fee_per_gas(newest_header)))
        result = {
            "oldestBlock": encoding.quantity(oldest),
            "baseFeePerGas": base_fees,
            "gasUsedRatio": ratios,
            "baseFeePerBlobGas": [encoding.quantity(1)] * len(base_fees),
            "blobGasUsedRatio": [0.0] * len(ratios),
        }
        if percentiles is not None:
            result["reward"] = rewards
        return result

    def _block_rewards(self, header: BlockHeaderAPI, percentiles: list) -> list[str]:
        """Tips at the given gas-weighted percentiles of one block, as geth computes them."""
        block = self._block(header)
        if not block.transactions:
            return [encoding.quantity(0)] * len(percentiles)
        receipts = self.chain.receipts(header.hash)
        items = []
        previous = 0
        for tx, receipt in zip(block.transactions, receipts):
            tip = encoding.effective_gas_price(tx, header.base_fee_per_gas) - header.base_fee_per_gas
            items.append((tip, receipt.gas_used - previous))
            previous = receipt.gas_used
        items.sort()
        result, index, cumulative = [], 0, items[0][1]
        for p in percentiles:
            threshold = header.gas_used * p / PERCENT
            while cumulative < threshold and index < len(items) - 1:
                index += 1
                cumulative += items[index][1]
            result.append(encoding.quantity(items[index][0]))
        return result

    # ---- logs and filters -----------------------------------------------------------

    def _range(self, criteria: LogCriteria, beyond_head_ok: bool = False) -> tuple[int, int]:
        """The blocks a log query spans. A range past the head is an error for eth_getLogs
        (geth's message and code, as the execution-apis vectors expect); a polled filter may
        name future blocks."""
        head = self.chain.head.block_number
        first = head if criteria.from_block is None else criteria.from_block
        last = head if criteria.to_block is None else criteria.to_block
        if not beyond_head_ok and (first > head or last > head) and first <= last:
            raise invalid_params("block range extends beyond current head block")
        if first > last:
            raise invalid_params("invalid block range params")
        if last - first + 1 > self.settings.logs_block_range:
            raise limit_exceeded(
                f"block range too large: at most {self.settings.logs_block_range} blocks per query"
            )
        return first, min(last, head)

    def collect_logs(self, criteria: LogCriteria, first: int, last: int) -> list[dict]:
        logs: list[dict] = []
        for number in range(first, last + 1):
            header = self.chain.header_by_number(number)
            if header is None:
                break
            logs.extend(self.block_logs(header, criteria))
            if len(logs) > self.settings.logs_max_results:
                raise limit_exceeded(
                    f"query returned more than {self.settings.logs_max_results} results; "
                    "narrow the block range or the filter"
                )
        return logs

    def block_logs(self, header: BlockHeaderAPI, criteria: LogCriteria) -> list[dict]:
        if not criteria.might_match(BloomFilter(header.bloom)):
            return []
        block = self._block(header)
        receipts = self.chain.receipts(header.hash)
        result, log_index = [], 0
        for tx_index, (tx, receipt) in enumerate(zip(block.transactions, receipts)):
            for encoded in encoding.encode_logs(receipt, header, tx, tx_index, log_index):
                if criteria.matches(encoded):
                    result.append(encoded)
            log_index += len(receipt.logs)
        return result

    async def get_logs(self, filter_object: Any) -> list[dict]:
        criteria = parse_log_criteria(filter_object, self._header)
        if criteria.block_hash is not None:
            header = self.chain.header_by_hash(criteria.block_hash)
            if header is None:
                raise server_error("unknown block")
            return self.block_logs(header, criteria)
        first, last = self._range(criteria)
        return await trio.to_thread.run_sync(self.collect_logs, criteria, first, last)

    def new_filter(self, filter_object: Any) -> str:
        criteria = parse_log_criteria(filter_object, self._header)
        return self.filters.new_log_filter(criteria, self.chain.head.block_number)

    def new_block_filter(self) -> str:
        return self.filters.new_block_filter(self.chain.head.block_number)

    def new_pending_transaction_filter(self) -> str:
        return self.filters.new_pending_filter()

    def get_filter_changes(self, filter_id: Any) -> list:
        return self.filters.changes(filter_id, self)

    def get_filter_logs(self, filter_id: Any) -> list:
        criteria = self.filters.log_criteria(filter_id)
        first, last = self._range(criteria, beyond_head_ok=True)
        return self.collect_logs(criteria, first, last)

    def uninstall_filter(self, filter_id: Any) -> bool:
        return self.filters.uninstall(filter_id)

    # ---- laminar_ namespace ---------------------------------------------------------

    def laminar_execution_stats(self) -> list[dict]:
        """How this node executed its recent blocks: executor, workers, re-executions."""
        return [
            {
                "number": encoding.quantity(number),
                "executor": stats.executor,
                "transactions": stats.transactions,
                "workers": stats.workers,
                "incarnations": stats.incarnations,
                "fallback": stats.fallback,
                # Block-STM went on with one worker from this transaction (contention).
                "narrowedAt": None if stats.narrowed_at is None
                else encoding.quantity(stats.narrowed_at),
                "executionSeconds": round(stats.execution_seconds, 6),
                "commitSeconds": round(stats.commit_seconds, 6),
            }
            for number, stats in self.chain.recent_stats
        ]

    def laminar_validators(self) -> list[str]:
        return [encoding.data(v) for v in self.validators]

    def laminar_get_commit(self, block: Any) -> Optional[dict]:
        header = self._header(params.block_ref(block))
        if header is None:
            return None
        raw = self.chain.store.get_certificate(header.hash)
        if not raw:
            return None  # genesis has no commit
        try:
            cert = CommitCertificate.decode(raw)
            signers = cert.signers(self.chain.chain_id)
        except InvalidCertificateError as exc:
            raise server_error(f"stored certificate unreadable: {exc}") from None
        return {
            "height": encoding.quantity(cert.height),
            "round": encoding.quantity(cert.round),
            "blockHash": encoding.data(cert.block_hash),
            "signatures": [encoding.data(s) for s in cert.signatures],
            "signers": [encoding.data(a) for a in signers],
        }


    def laminar_consensus_state(self) -> dict:
        """The consensus engine's view: height, round, step, lock, proposer, evidence..."""
        if self.consensus_state is None:
            return {"mode": "none"}
        return self.consensus_state()

    def laminar_mempool_status(self) -> dict:
        pending = len(self.mempool.pending_transactions())
        return {
            "pending": encoding.quantity(pending),
            "queued": encoding.quantity(len(self.mempool) - pending),
        }


def register_eth_api(methods: Methods, api: EthApi) -> None:
    table: dict[str, Callable[..., Any]] = {
        "eth_chainId": api.chain_id,
        "net_version": api.net_version,
        "net_listening": api.net_listening,
        "net_peerCount": api.net_peer_count,
        "web3_clientVersion": api.client_version,
        "eth_syncing": api.syncing,
        "eth_accounts": api.accounts,
        "eth_blockNumber": api.block_number,
        "eth_getBalance": api.get_balance,
        "eth_getTransactionCount": api.get_transaction_count,
        "eth_getCode": api.get_code,
        "eth_getStorageAt": api.get_storage_at,
        "eth_getBlockByNumber": api.get_block_by_number,
        "eth_getBlockByHash": api.get_block_by_hash,
        "eth_getBlockAccessList": api.get_block_access_list,
        "debug_getRawBlockAccessList": api.get_raw_block_access_list,
        "eth_getBlockTransactionCountByNumber": api.get_block_transaction_count_by_number,
        "eth_getBlockTransactionCountByHash": api.get_block_transaction_count_by_hash,
        "eth_getTransactionByHash": api.get_transaction_by_hash,
        "eth_getTransactionByBlockNumberAndIndex": api.get_transaction_by_block_number_and_index,
        "eth_getTransactionReceipt": api.get_transaction_receipt,
        "eth_getTransactionByBlockHashAndIndex": api.get_transaction_by_block_hash_and_index,
        "eth_getBlockReceipts": api.get_block_receipts,
        "eth_getStorageValues": api.get_storage_values,
        "eth_coinbase": api.coinbase,
        "eth_baseFee": api.base_fee,
        "eth_blobBaseFee": api.blob_base_fee,
        "eth_getUncleCountByBlockNumber": api.get_uncle_count,
        "eth_call": api.eth_call,
        "eth_estimateGas": api.estimate_gas,
        "eth_gasPrice": api.gas_price,
        "eth_maxPriorityFeePerGas": api.max_priority_fee,
        "eth_feeHistory": api.fee_history,
        "eth_getLogs": api.get_logs,
        "eth_newFilter": api.new_filter,
        "eth_newBlockFilter": api.new_block_filter,
        "eth_newPendingTransactionFilter": api.new_pending_transaction_filter,
        "eth_getFilterChanges": api.get_filter_changes,
        "eth_getFilterLogs": api.get_filter_logs,
        "eth_uninstallFilter": api.uninstall_filter,
        "laminar_validators": api.laminar_validators,
        "laminar_getCommit": api.laminar_get_commit,
        "laminar_consensusState": api.laminar_consensus_state,
        "laminar_mempoolStatus": api.laminar_mempool_status,
        "laminar_executionStats": api.laminar_execution_stats,
    }
    for name, handler in table.items():
        methods.register(name, handler)
    methods.register("eth_sendRawTransaction", api.send_raw_transaction, many=api.send_raw_transactions)


def register_subscriptions(hub: SubscriptionHub, api: EthApi) -> None:
    def parse_logs_filter(*args: Any) -> LogCriteria:
        if len(args) > 1:
            raise invalid_params("too many arguments, want at most 1")
        filter_object = args[0] if args else {}
        return parse_log_criteria(filter_object, api._header, allow_range=False)

    def select_logs(criteria: LogCriteria, logs: list[dict]) -> list[dict]:
        return [log for log in logs if criteria.matches(log)]

    def parse_full_transactions(*args: Any) -> bool:
        """geth's optional flag: true sends whole transaction objects, not hashes."""
        if len(args) > 1:
            raise invalid_params("too many arguments, want at most 1")
        if args and not isinstance(args[0], bool):
            raise invalid_params("invalid argument 0: expected a boolean (full transactions)")
        return bool(args and args[0])

    def select_pending(full: bool, pooled: PooledTx) -> list:
        if full:
            return [encoding.encode_transaction(pooled.tx, None, None)]
        return [encoding.data(pooled.hash)]

    hub.register_kind("newHeads")
    hub.register_kind("logs", parse_params=parse_logs_filter, select=select_logs)
    hub.register_kind(
        "newPendingTransactions", parse_params=parse_full_transactions, select=select_pending
    )
    api.pending_listeners.append(
        lambda pooled: hub.publish("newPendingTransactions", pooled)
    )
