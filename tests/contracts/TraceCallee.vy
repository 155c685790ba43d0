# pragma version ~=0.4.3
# Called by TraceCaller in the tracing tests: stores, emits, reverts with a reason,
# self-destructs.

event Stored:
    who: indexed(address)
    value: uint256

value: public(uint256)


@external
def store(v: uint256):
    self.value = v
    log Stored(who=msg.sender, value=v)


@external
@view
def get() -> uint256:
    return self.value


@external
def fail(v: uint256):
    self.value = v
    log Stored(who=msg.sender, value=v)
    assert v < 10, "value too large"


@external
def destroy(to: address):
    selfdestruct(to)
