"""Validation: table checksums (`checksums`), key ranges and row hashes (`key_ranges`), the
row diff that names each differing key and column (`row_diff`; its bisection of a differing range `bisection`,
the keyless tables' multiset compare `keyless`, the re-check of rows in flight `recheck`, the sampled mode
`sampling`, the result `diff_result`), and Great Expectations (`ge_suites`,
`ge_checkpoint`, `ge_live`).

Used by `pg_migration` (validate), `pg_validate` (weekly), `pg_cutover` (pre_validate) and the runbook.
"""
