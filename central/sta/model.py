"""The SensorThings entity sets over the central's tables.

| STA entity        | rows                                    | ``@iot.id``                   |
|-------------------|-----------------------------------------|-------------------------------|
| Thing             | ``nodes``                               | node id                       |
| Location, FeatureOfInterest, HistoricalLocation | located ``nodes`` (see below) | node id    |
| Sensor            | distinct (node, sensor name) of ``channels`` | ``node:sensor``          |
| ObservedProperty  | distinct quantity of ``channels``       | quantity (``temperature_c``)  |
| Datastream        | ``channels`` (node × channel)           | ``node:channel``              |
| Observation       | ``readings``                            | ``node:epoch:seq``            |

Located nodes are those whose last health reported ``location_lat`` and ``location_lon``.
Node ids never contain ``:`` (``[A-Za-z0-9][A-Za-z0-9._-]*``), so every id splits at its first colon.
Each set knows its SQL source, the properties a ``$filter``/``$orderby`` may use (as SQL), how to
turn an id into a condition, its navigation properties and how to render a row.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from central.health import health_of, lat_lon
from central.sta import vocab
from node.model import flag_names

Row = dict[str, Any]
Cond = tuple[str, list[Any]]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_JSON_KEY = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
THING_PROPERTIES = ("ward", "label", "firmware")


def iso_ms(ms: int | None) -> str | None:
    """``2026-11-25T10:00:00.123Z`` (exact: no float rounding)."""
    if ms is None:
        return None
    text = (_EPOCH + timedelta(milliseconds=int(ms))).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


class Dialect:
    """The SQL that differs between SQLite and PostgreSQL."""

    name = "sqlite"

    def json_text(self, col: str, key: str) -> str:
        if not _JSON_KEY.match(key):
            raise ValueError(f"bad JSON key {key!r}")
        return f"json_extract({col}, '$.{key}')"

    def sensor_of(self, col: str) -> str:
        return (f"(CASE WHEN instr({col}, '.') > 0 THEN substr({col}, 1, instr({col}, '.') - 1) "
                f"ELSE {col} END)")

    def quantity_of(self, col: str) -> str:
        return f"(CASE WHEN instr({col}, '.') > 0 THEN substr({col}, instr({col}, '.') + 1) ELSE {col} END)"


class PgDialect(Dialect):
    name = "postgresql"

    def json_text(self, col: str, key: str) -> str:
        if not _JSON_KEY.match(key):
            raise ValueError(f"bad JSON key {key!r}")
        return f"(({col})::jsonb ->> '{key}')"

    def sensor_of(self, col: str) -> str:
        return f"(CASE WHEN strpos({col}, '.') > 0 THEN split_part({col}, '.', 1) ELSE {col} END)"

    def quantity_of(self, col: str) -> str:
        return f"(CASE WHEN strpos({col}, '.') > 0 THEN substr({col}, strpos({col}, '.') + 1) ELSE {col} END)"


@dataclass(frozen=True)
class Prop:
    """A property usable in ``$filter``/``$orderby``.

    ``kind``: "text", "number", "time" (ms in SQL, date-time literals in the filter) or "id"
    (compared through ``id_cond``, ordered by the key columns in ``order``).
    """

    sql: str
    kind: str
    order: tuple[str, ...] = ()
    nullable: bool = False
    id_cond: Callable[[str], Cond | None] | None = None

    def order_exprs(self) -> tuple[str, ...]:
        return self.order or (self.sql,)


@dataclass(frozen=True)
class Nav:
    target: str
    many: bool
    cond: Callable[[Row], Cond]
    fixes: tuple[str, ...] = ()  # target columns the condition pins by equality (left out of the order)


@dataclass
class EntitySet:
    name: str
    singular: str
    source: str
    columns: tuple[tuple[str, str], ...]
    props: dict[str, Prop]
    id_of: Callable[[Row], str]
    id_cond: Callable[[str], Cond | None]
    render: Callable[[Row], dict[str, Any]]
    where: str = ""
    navs: dict[str, Nav] = field(default_factory=dict)
    default_order: tuple[tuple[str, bool], ...] = (("@iot.id", False),)
    nested_default_order: tuple[tuple[str, bool], ...] | None = None  # under a parent entity

    def prop(self, path: str) -> Prop | None:
        if path == "id":
            path = "@iot.id"
        return self.props.get(path)


# ---------------------------------------------------------------- id helpers
def _split_id(text: str) -> tuple[str, str] | None:
    head, colon, tail = text.partition(":")
    return (head, tail) if colon and head and tail else None


def _node_cond(col: str) -> Callable[[str], Cond | None]:
    return lambda text: (f"{col} = ?", [text])


def _pair_cond(node_col: str, other_sql: str) -> Callable[[str], Cond | None]:
    def cond(text: str) -> Cond | None:
        parts = _split_id(text)
        if parts is None:
            return None
        return f"({node_col} = ? AND {other_sql} = ?)", [parts[0], parts[1]]

    return cond


def _observation_cond(text: str) -> Cond | None:
    parts = _split_id(text)
    if parts is None:
        return None
    epoch, colon, seq = parts[1].partition(":")
    if not (colon and epoch.isdigit() and seq.isdigit() and len(epoch) < 16 and len(seq) < 16):
        return None
    return "(r.node_id = ? AND r.epoch = ? AND r.seq = ?)", [parts[0], int(epoch), int(seq)]


def observation_id(node_id: str, epoch: int, seq: int) -> str:
    """The stable ``@iot.id`` of a reading: one id per (node, epoch, seq), forever."""
    return f"{node_id}:{epoch}:{seq}"


def _health(row: Row) -> dict[str, Any]:
    return health_of(row.get("health_json"))


def _point(health: dict[str, Any]) -> dict[str, Any] | None:
    point = lat_lon(health)
    if point is None:
        return None
    return {"type": "Point", "coordinates": [point[1], point[0]]}


# ---------------------------------------------------------------- rendering
def _render_thing(row: Row) -> dict[str, Any]:
    health = _health(row)
    label = health.get("location_label")
    props = {"ward": health.get("location_ward"), "label": label, "firmware": health.get("firmware"),
             "lastSeen": iso_ms(row["last_seen_ms"])}
    return {"name": row["node_id"], "description": label or f"streetnode pole {row['node_id']}",
            "properties": props}


def _render_location(row: Row) -> dict[str, Any]:
    health = _health(row)
    label = health.get("location_label")
    return {"name": label or row["node_id"],
            "description": f"Reported location of node {row['node_id']}",
            "encodingType": "application/geo+json", "location": _point(health),
            "properties": {"ward": health.get("location_ward"), "label": label}}


def _render_historical_location(row: Row) -> dict[str, Any]:
    return {"time": iso_ms(row["health_ms"])}


def _render_feature(row: Row) -> dict[str, Any]:
    health = _health(row)
    return {"name": health.get("location_label") or row["node_id"],
            "description": f"The street at node {row['node_id']}",
            "encodingType": "application/geo+json", "feature": _point(health)}


def _render_sensor(row: Row) -> dict[str, Any]:
    quantity = vocab.split_channel(row["channel"])[1]
    return {"name": row["sensor"], "description": f"Sensor {row['sensor']!r} of node {row['node_id']}",
            "encodingType": "text/plain",
            "metadata": vocab.INSTRUMENTS.get(quantity, "instrument not known to the central"),
            "properties": {"node": row["node_id"]}}


def _render_observed_property(row: Row) -> dict[str, Any]:
    name, definition, description = vocab.observed_property(row["quantity"])
    return {"name": name, "definition": definition, "description": description,
            "properties": {"quantity": row["quantity"]}}


def _render_datastream(row: Row) -> dict[str, Any]:
    sensor, quantity = vocab.split_channel(row["channel"])
    name = vocab.observed_property(quantity)[0]
    doc: dict[str, Any] = {
        "name": f"{row['node_id']} {row['channel']}",
        "description": f"{name} at node {row['node_id']} (sensor {sensor})",
        "observationType": vocab.OM_MEASUREMENT,
        "unitOfMeasurement": vocab.unit_of_measurement(row["unit"]),
    }
    point = _point(_health(row))
    if point is not None:
        doc["observedArea"] = point
    if row["first_ms"] is not None:
        doc["phenomenonTime"] = f"{iso_ms(row['first_ms'])}/{iso_ms(row['last_ms'])}"
    doc["properties"] = {"node": row["node_id"], "channel": row["channel"], "sensor": sensor,
                         "quantity": quantity}
    return doc


def _render_observation(row: Row) -> dict[str, Any]:
    flags = int(row["flags"])
    value = row["value"]
    return {"phenomenonTime": iso_ms(row["wall_ms"]), "resultTime": iso_ms(row["received_ms"]),
            "result": None if value is None else float(value), "resultQuality": flag_names(flags),
            "parameters": {"epoch": int(row["epoch"]), "seq": int(row["seq"]), "flags": flags}}


# ---------------------------------------------------------------- the model
def _node_sets(d: Dialect) -> dict[str, EntitySet]:
    has_location = (f"{d.json_text('n.health_json', 'location_lat')} IS NOT NULL AND "
                    f"{d.json_text('n.health_json', 'location_lon')} IS NOT NULL")
    columns = (("node_id", "n.node_id"), ("health_json", "n.health_json"), ("health_ms", "n.health_ms"),
               ("last_seen_ms", "n.last_seen_ms"))
    node_id = lambda row: row["node_id"]  # noqa: E731
    by_node = lambda col: (lambda row: (f"{col} = ?", [row["node_id"]]))  # noqa: E731
    node_props = {"@iot.id": Prop("n.node_id", "text")}
    prop_json = {f"properties/{k}": Prop(d.json_text("n.health_json", f"location_{k}" if k != "firmware"
                                                     else k), "text", nullable=True)
                 for k in THING_PROPERTIES}
    things = EntitySet(
        "Things", "Thing", "nodes n", columns,
        {**node_props, "name": Prop("n.node_id", "text"), **prop_json}, node_id, _node_cond("n.node_id"),
        _render_thing,
        navs={"Locations": Nav("Locations", True, by_node("n.node_id")),
              "HistoricalLocations": Nav("HistoricalLocations", True, by_node("n.node_id")),
              "Datastreams": Nav("Datastreams", True, by_node("c.node_id"))})
    located = {k: v for k, v in prop_json.items() if k != "properties/firmware"}
    locations = EntitySet(
        "Locations", "Location", "nodes n", columns, {**node_props, **located}, node_id,
        _node_cond("n.node_id"), _render_location, where=has_location,
        navs={"Things": Nav("Things", True, by_node("n.node_id")),
              "HistoricalLocations": Nav("HistoricalLocations", True, by_node("n.node_id"))})
    historical = EntitySet(
        "HistoricalLocations", "HistoricalLocation", "nodes n", columns,
        {**node_props, "time": Prop("n.health_ms", "time", nullable=True)}, node_id, _node_cond("n.node_id"),
        _render_historical_location, where=has_location,
        navs={"Thing": Nav("Things", False, by_node("n.node_id")),
              "Locations": Nav("Locations", True, by_node("n.node_id"))})
    features = EntitySet(
        "FeaturesOfInterest", "FeatureOfInterest", "nodes n", columns, dict(node_props), node_id,
        _node_cond("n.node_id"), _render_feature, where=has_location,
        navs={"Observations": Nav("Observations", True, by_node("r.node_id"), fixes=("r.node_id",))})
    return {s.name: s for s in (things, locations, historical, features)}


def _channel_sets(d: Dialect) -> dict[str, EntitySet]:
    sensor_c, quantity_c = d.sensor_of("c.channel"), d.quantity_of("c.channel")
    sensors = EntitySet(
        "Sensors", "Sensor",
        f"(SELECT node_id, {d.sensor_of('channel')} AS sensor, MIN(channel) AS channel FROM channels "
        f"GROUP BY node_id, {d.sensor_of('channel')}) s",
        (("node_id", "s.node_id"), ("sensor", "s.sensor"), ("channel", "s.channel")),
        {"@iot.id": Prop("", "id", ("s.node_id", "s.sensor"), id_cond=_pair_cond("s.node_id", "s.sensor")),
         "name": Prop("s.sensor", "text")},
        lambda row: f"{row['node_id']}:{row['sensor']}", _pair_cond("s.node_id", "s.sensor"), _render_sensor,
        navs={"Datastreams": Nav("Datastreams", True, lambda row: (
            f"(c.node_id = ? AND {sensor_c} = ?)", [row["node_id"], row["sensor"]]))})
    observed = EntitySet(
        "ObservedProperties", "ObservedProperty",
        f"(SELECT DISTINCT {d.quantity_of('channel')} AS quantity FROM channels) q",
        (("quantity", "q.quantity"),),
        {"@iot.id": Prop("q.quantity", "text")},
        lambda row: row["quantity"], _node_cond("q.quantity"), _render_observed_property,
        navs={"Datastreams": Nav("Datastreams", True, lambda row: (f"{quantity_c} = ?", [row["quantity"]]))})
    stream_cond = _pair_cond("c.node_id", "c.channel")
    span = ("(SELECT {fn}(r2.wall_ms) FROM readings r2 "
            "WHERE r2.node_id = c.node_id AND r2.channel = c.channel)")
    datastreams = EntitySet(
        "Datastreams", "Datastream", "channels c LEFT JOIN nodes n ON n.node_id = c.node_id",
        (("node_id", "c.node_id"), ("channel", "c.channel"), ("unit", "c.unit"),
         ("health_json", "n.health_json"), ("first_ms", span.format(fn="MIN")),
         ("last_ms", span.format(fn="MAX"))),
        {"@iot.id": Prop("", "id", ("c.node_id", "c.channel"), id_cond=stream_cond),
         "name": Prop("c.node_id || ' ' || c.channel", "text"),
         "Thing/@iot.id": Prop("c.node_id", "text"),
         "Sensor/@iot.id": Prop("", "id", ("c.node_id", sensor_c), id_cond=_pair_cond("c.node_id", sensor_c)),
         "ObservedProperty/@iot.id": Prop(quantity_c, "text"),
         "properties/channel": Prop("c.channel", "text"),
         "unitOfMeasurement/symbol": Prop("c.unit", "text")},
        lambda row: f"{row['node_id']}:{row['channel']}", stream_cond, _render_datastream,
        navs={"Thing": Nav("Things", False, lambda row: ("n.node_id = ?", [row["node_id"]])),
              "Sensor": Nav("Sensors", False, lambda row: ("(s.node_id = ? AND s.sensor = ?)", [
                  row["node_id"], vocab.split_channel(row["channel"])[0]])),
              "ObservedProperty": Nav("ObservedProperties", False, lambda row: (
                  "q.quantity = ?", [vocab.split_channel(row["channel"])[1]])),
              "Observations": Nav("Observations", True, lambda row: (
                  "(r.node_id = ? AND r.channel = ?)", [row["node_id"], row["channel"]]),
                  fixes=("r.node_id", "r.channel"))})
    return {s.name: s for s in (sensors, observed, datastreams)}


def _observations() -> EntitySet:
    key = ("r.node_id", "r.epoch", "r.seq")
    return EntitySet(
        "Observations", "Observation", "readings r",
        (("node_id", "r.node_id"), ("epoch", "r.epoch"), ("seq", "r.seq"), ("channel", "r.channel"),
         ("value", "r.value"), ("flags", "r.flags"), ("wall_ms", "r.wall_ms"),
         ("received_ms", "r.received_ms")),
        {"@iot.id": Prop("", "id", key, id_cond=_observation_cond),
         "phenomenonTime": Prop("r.wall_ms", "time"),
         "resultTime": Prop("r.received_ms", "time"),
         "result": Prop("r.value", "number", nullable=True),
         "Datastream/@iot.id": Prop("", "id", ("r.node_id", "r.channel"),
                                    id_cond=_pair_cond("r.node_id", "r.channel")),
         "Datastream/Thing/@iot.id": Prop("r.node_id", "text"),
         "FeatureOfInterest/@iot.id": Prop("r.node_id", "text"),
         "parameters/epoch": Prop("r.epoch", "number"),
         "parameters/seq": Prop("r.seq", "number"),
         "parameters/flags": Prop("r.flags", "number")},
        lambda row: observation_id(row["node_id"], int(row["epoch"]), int(row["seq"])), _observation_cond,
        _render_observation,
        navs={"Datastream": Nav("Datastreams", False, lambda row: (
                  "(c.node_id = ? AND c.channel = ?)", [row["node_id"], row["channel"]])),
              "FeatureOfInterest": Nav("FeaturesOfInterest", False, lambda row: (
                  "n.node_id = ?", [row["node_id"]]))},
        # under a Datastream the stream index (node_id, channel, wall_ms, epoch, seq) gives time order
        nested_default_order=(("phenomenonTime", False), ("@iot.id", False)))


def build_model(dialect: Dialect) -> dict[str, EntitySet]:
    """Every entity set, by its plural name, with SQL for ``dialect``."""
    return {**_node_sets(dialect), **_channel_sets(dialect), "Observations": _observations()}


# what each entity renders besides @iot.id/@iot.selfLink/navigation links (the $select vocabulary)
FIELDS: dict[str, tuple[str, ...]] = {
    "Things": ("name", "description", "properties"),
    "Locations": ("name", "description", "encodingType", "location", "properties"),
    "HistoricalLocations": ("time",),
    "FeaturesOfInterest": ("name", "description", "encodingType", "feature"),
    "Sensors": ("name", "description", "encodingType", "metadata", "properties"),
    "ObservedProperties": ("name", "definition", "description", "properties"),
    "Datastreams": ("name", "description", "observationType", "unitOfMeasurement", "observedArea",
                    "phenomenonTime", "properties"),
    "Observations": ("phenomenonTime", "resultTime", "result", "resultQuality", "validTime", "parameters"),
}

# the order entity sets are listed in the service root document
SET_ORDER = ("Things", "Locations", "HistoricalLocations", "Datastreams", "Sensors", "ObservedProperties",
             "Observations", "FeaturesOfInterest")
