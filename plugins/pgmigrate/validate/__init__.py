"""Validation: table checksums (`checksums`), key ranges and row hashes (`key_ranges`), the
row diff that names each differing key and column (`row_diff`), and Great Expectations (`ge_suites`,
`ge_checkpoint`, `ge_live`).

Used by `pg_migration` (validate), `pg_validate` (weekly), `pg_cutover` (pre_validate) and the runbook.
"""
