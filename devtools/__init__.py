"""The repo's own tools, not the product: the figures of `make bench` (`bench_*`) and the scratch databases that
`make demo`, `make bench` and the tests create and drop (`databases`). Importable with the repo root on the path
(pytest's `pythonpath`, `scripts/bench.py`, `scripts/demo.py`).
"""
