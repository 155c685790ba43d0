# pragma version ~=0.4.3
# Calls TraceCallee every way the tracing tests look at: CALL, STATICCALL, DELEGATECALL,
# a call that reverts (caught, and not), CREATE and CREATE2.

interface Callee:
    def store(v: uint256): nonpayable
    def get() -> uint256: view
    def fail(v: uint256): nonpayable
    def destroy(to: address): nonpayable

event Called:
    target: indexed(address)
    value: uint256

value: public(uint256)  # slot 0, as the callee's: DELEGATECALL to store() writes it
callee: public(address)
tries: public(uint256)


@deploy
def __init__(c: address):
    self.callee = c


@external
def run(v: uint256) -> uint256:
    extcall Callee(self.callee).store(v)
    log Called(target=self.callee, value=v)
    got: uint256 = staticcall Callee(self.callee).get()
    raw_call(
        self.callee, abi_encode(v + 1, method_id=method_id("store(uint256)")),
        is_delegate_call=True,
    )
    return got


@external
def run_failing(v: uint256):
    extcall Callee(self.callee).fail(v)


@external
def try_failing(v: uint256) -> bool:
    ok: bool = raw_call(
        self.callee, abi_encode(v, method_id=method_id("fail(uint256)")),
        revert_on_failure=False,
    )
    self.tries += 1
    log Called(target=self.callee, value=v)
    return ok


@external
def spawn(salt: bytes32) -> (address, address):
    a: address = create_copy_of(self.callee)
    b: address = create_copy_of(self.callee, salt=salt)
    return a, b


@external
def kill(target: address, to: address):
    extcall Callee(target).destroy(to)
