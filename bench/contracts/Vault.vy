# pragma version ~=0.4.3
"""
@title Hot recipient for the `mixed` workload of `laminar bench`
@notice Takes plain ETH transfers and counts them: every deposit reads and writes the
        same two slots, so deposits conflict with each other.
"""

event Deposit:
    sender: indexed(address)
    value: uint256

deposits: public(uint256)
total: public(uint256)


@payable
@external
def __default__():
    self.deposits += 1
    self.total += msg.value
    log Deposit(sender=msg.sender, value=msg.value)
