# pragma version ~=0.4.3
"""
@title Constant-product AMM pool for `laminar bench`
@notice Keeps both token balances as internal ledgers in the pool itself: a trader's
        `balance0`/`balance1` entries stand for deposited tokens. `swap` moves
        `amount_in` of one token from the trader's ledger into the reserves and pays out
        the other token so that x * y = k holds after a 0.3% fee, like Uniswap v2.
        Every swap reads and writes both reserves, so each depends on the one before.
"""

event Swap:
    trader: indexed(address)
    zero_for_one: bool
    amount_in: uint256
    amount_out: uint256
    reserve0: uint256
    reserve1: uint256

reserve0: public(uint256)
reserve1: public(uint256)
balance0: public(HashMap[address, uint256])
balance1: public(HashMap[address, uint256])
swaps: public(uint256)


@deploy
def __init__(_reserve0: uint256, _reserve1: uint256):
    self.reserve0 = _reserve0
    self.reserve1 = _reserve1


@view
@internal
def _amount_out(amount_in: uint256, reserve_in: uint256, reserve_out: uint256) -> uint256:
    amount_in_with_fee: uint256 = amount_in * 997
    return (amount_in_with_fee * reserve_out) // (reserve_in * 1000 + amount_in_with_fee)


@view
@external
def quote(amount_in: uint256, zero_for_one: bool) -> uint256:
    if zero_for_one:
        return self._amount_out(amount_in, self.reserve0, self.reserve1)
    return self._amount_out(amount_in, self.reserve1, self.reserve0)


@external
def swap(amount_in: uint256, zero_for_one: bool) -> uint256:
    assert amount_in > 0, "zero input"
    r0: uint256 = self.reserve0
    r1: uint256 = self.reserve1
    amount_out: uint256 = 0
    if zero_for_one:
        assert self.balance0[msg.sender] >= amount_in, "insufficient token0"
        amount_out = self._amount_out(amount_in, r0, r1)
        assert amount_out > 0 and amount_out < r1, "insufficient liquidity"
        self.balance0[msg.sender] -= amount_in
        self.balance1[msg.sender] += amount_out
        r0 += amount_in
        r1 -= amount_out
    else:
        assert self.balance1[msg.sender] >= amount_in, "insufficient token1"
        amount_out = self._amount_out(amount_in, r1, r0)
        assert amount_out > 0 and amount_out < r0, "insufficient liquidity"
        self.balance1[msg.sender] -= amount_in
        self.balance0[msg.sender] += amount_out
        r1 += amount_in
        r0 -= amount_out
    self.reserve0 = r0
    self.reserve1 = r1
    self.swaps += 1
    log Swap(trader=msg.sender, zero_for_one=zero_for_one, amount_in=amount_in, amount_out=amount_out, reserve0=r0, reserve1=r1)
    return amount_out
