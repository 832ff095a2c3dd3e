"""The city's operator console: web pages (overview map and table, node pages with charts) and the
operator read API behind them, served by ``streetnode-central serve`` (docs/central.md, "Console").

- `config`: the ``[console]`` table of the central's config file.
- `status`: pure rules: a node's state (live / late / buffering / silent), flood and VN_AQI bands.
- `rollup`: the latest value per channel and the hourly rollup, updated in the ingest transaction.
- `queries`: the bounded reads (read-only connections of central/sta/db.py, with a deadline).
- `api`: ``/v1/latest``, ``/v1/nodes/{id}/channels``, ``/series``, ``/timeline`` (role read).

Nothing here imports the web stack at import time (the store imports `rollup`).
"""
