"""Example triggers built on ``@stateful``, and the script behind ``make demo``."""
