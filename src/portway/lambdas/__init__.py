"""The Lambda runtime: handlers run in warm worker processes, as Lambda execution environments.

Kept empty on purpose: every worker process imports this package, so importing it must cost nothing.
The pieces live in :mod:`portway.lambdas.runtime` (the gateway side), :mod:`portway.lambdas.worker` (the
process side) and :mod:`portway.lambdas.spec` (what a function is).
"""
