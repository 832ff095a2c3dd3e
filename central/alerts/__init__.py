"""Alerts at the central (issue 15): rules evaluated when a batch is stored, a lifecycle with history,
and delivery to webhooks and MQTT through a queue in the database. See docs/alerts.md."""
