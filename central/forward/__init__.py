"""Forwarding stored readings to MQTT brokers: ThingsBoard's gateway API or plain topics (docs/central.md).

`config` parses ``[[forward]]`` sinks, `layouts` turns readings into messages, `db` keeps each
sink's cursor and lease in the central's database, `mqtt` is one paho connection, `forwarder` the
loop (a thread of ``serve``).
"""
