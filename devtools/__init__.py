"""Development tools: the Snowflake emulator and the embedded-services runner.

Used by `make demo`, `make test` and `make bench`; never imported by the deployed service
(tests/project/test_layout.py checks that).
"""
