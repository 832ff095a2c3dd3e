"""Fleet configuration: layers per group and per node, pushed with `streetnode-central config`,
fetched by the nodes with a signed ``POST /v1/config``, rolled out in waves (docs/fleet.md)."""
