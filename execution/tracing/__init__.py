"""Transaction tracing in geth's formats (debug_trace*): the struct logger, callTracer and
prestateTracer over py-evm.

`hooks` puts a `Tracer` into py-evm's computation (frame enter/exit, every opcode step,
every log); `replay` re-executes a committed block sequentially on its parent state up to
the traced transaction, so a trace never depends on the executor that committed the block.
"""
