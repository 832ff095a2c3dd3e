"""The unmodified third-party `frost-sta-client` (PyPI) against a real `streetnode-central serve`
process on SQLite and PostgreSQL: Things with Locations, a Datastream's Observations walked in
pages with a time filter, values equal to what the node sent in its signed uploads."""

from __future__ import annotations

import frost_sta_client as fsc
import pytest
import requests

from central.store import open_store
from tests.central.test_cli import run, start_server
from tests.sta.conftest import _db_url, _drop
from tests.sta.data import LOCATED, START_MS, STEP_MS, fill

# the client's own dependency (furl) warns about the client's use of it; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:furl.pathstr is deprecated:DeprecationWarning")


class BearerToken(fsc.AuthHandler):
    """The client's own extension point (an `AuthHandler` returning a requests auth): our API tokens
    are sent as ``Authorization: Bearer``, which the client's built-in handler (Basic) does not do."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def add_auth_header(self) -> requests.auth.AuthBase:
        token = self.token

        class Bearer(requests.auth.AuthBase):
            def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
                r.headers["Authorization"] = f"Bearer {token}"
                return r

        return Bearer()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def served(request, tmp_path_factory, cli_env):
    """A `streetnode-central serve` subprocess on a database filled through signed uploads, and a
    read token made with `streetnode-central token add`."""
    db_url, schema = _db_url(request.param, tmp_path_factory)
    store = open_store(db_url)
    proc, base = start_server(["--db", db_url], cli_env)
    try:
        sent = fill(store, base, cycles=150)
        made = run(["token", "add", "gis-desk", "--role", "read", "--db", db_url], cli_env)
        assert made.returncode == 0, made.stderr
        yield base, sent, made.stdout.strip()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        store.close()
        _drop(schema)


def iso(ms: int) -> str:
    from central.sta.model import iso_ms

    return iso_ms(ms)


def test_frost_client_things_locations_and_paged_observations(served):
    base, sent, token = served
    anonymous = fsc.SensorThingsService(base + "/sta/v1.1")
    with pytest.raises(requests.HTTPError, match="401"):
        anonymous.things().query().list()
    service = fsc.SensorThingsService(base + "/sta/v1.1", auth_handler=BearerToken(token))

    things = service.things().query().expand("Locations").orderby("@iot.id", "ASC").list()
    by_id = {t.id: t for t in things}
    assert sorted(by_id) == ["pole-1", "pole-2"]
    located = by_id["pole-1"]
    assert located.properties["ward"] == LOCATED["location_ward"]
    [location] = located.locations.entities
    assert location.encoding_type == "application/geo+json"
    assert list(location.location["coordinates"]) == [LOCATED["location_lon"], LOCATED["location_lat"]]
    assert by_id["pole-2"].locations.entities == []

    stream = service.datastreams().find("pole-1:weather.temperature_c")
    assert stream.unit_of_measurement.symbol == "°C"
    lo, hi = START_MS + 30 * STEP_MS, START_MS + 120 * STEP_MS
    query = (stream.get_observations().query()
             .filter(f"phenomenonTime ge {iso(lo)} and phenomenonTime lt {iso(hi)}")
             .orderby("phenomenonTime", "ASC").top(25).count())
    page = query.list()
    assert page.next_link is not None  # more than one page: the client follows @iot.nextLink
    got = list(page)  # iterating walks every page
    want = sorted(((k, r) for k, r in sent.items()
                   if k[0] == "pole-1" and r.channel == "weather.temperature_c" and lo <= r.wall_ms < hi),
                  key=lambda kr: (kr[1].wall_ms, kr[0]))
    assert page.count == len(want) == 90
    assert [o.id for o in got] == [f"{n}:{e}:{s}" for (n, e, s), _ in want]
    assert [o.result for o in got] == [r.value for _, r in want]
    assert [o.phenomenon_time for o in got] == [iso(r.wall_ms) for _, r in want]
    assert len({o.id for o in got}) == len(got)

    faults = (service.datastreams().find("pole-1:air.pm2_5_ugm3").get_observations().query()
              .filter("result eq null").top(100).list())
    fault_ids = {o.id for o in faults}
    assert fault_ids == {f"{n}:{e}:{s}" for (n, e, s), r in sent.items()
                         if n == "pole-1" and r.channel == "air.pm2_5_ugm3" and r.value is None}
    assert all(o.result_quality == ["fault"] for o in faults)
