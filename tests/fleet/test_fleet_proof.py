"""#17's proof with real processes: one `streetnode-central serve`, 20 `streetnode run` emulated
nodes (tests/fleet/proof.py has the steps; docs/fleet.md the figures)."""

from __future__ import annotations

from tests.fleet.proof import UPLOAD_S, WINDOW_S, FleetRun

# a shared 2-core machine can delay a process by a second or two; the figures in docs/fleet.md are
# from a run without this slack
SCHEDULING_SLACK_S = 2.0


def test_twenty_nodes_apply_revert_stop_the_canary_and_survive_sigkills(tmp_path):
    fig = FleetRun(tmp_path, nodes=20, kills=20, seed=17).run()
    print("\n" + fig.table())
    assert len(fig.applied_s) == 20 and max(fig.applied_s) <= 2 * UPLOAD_S + SCHEDULING_SLACK_S
    assert len(fig.healthy_s) == 20
    # every node went back by itself: the health window after the fetch, and said so when back
    assert len(fig.rollback_s) == 20 and min(fig.rollback_s) >= WINDOW_S
    # (the next ack names the version, the fetch and apply follow, then the window runs out)
    assert max(fig.rollback_s) <= WINDOW_S + 2 * UPLOAD_S + SCHEDULING_SLACK_S
    assert len(fig.reverted_s) == 20
    assert fig.canary_reason.endswith("(last error: connection refused by 127.0.0.1:9)")
    assert fig.kills >= 20 and sum(fig.kill_states.values()) == fig.kills
    assert fig.readings > 0 and fig.lost == 0 and fig.duplicates == 0
