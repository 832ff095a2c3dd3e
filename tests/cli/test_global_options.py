"""Issue #10 part 2: global options where people type them; --emulate never swallows a word."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from node import cli
from node.commands import options
from tests.conftest import EXAMPLE_CONFIG, PYTHON, ROOT

SUBCOMMANDS = [["config", "check"], ["run"], ["status"], ["demo"], ["diag"], ["scan"], ["read"],
               ["identify"], ["bundle"], ["provision"]]


def parse(argv: list[str]):
    """As `cli.main` parses: with only the named command's parser when it can tell which."""
    args = cli.merge_global_options(cli.build_parser(cli.command_in(argv)).parse_args(argv))
    options.settle_emulate(args)
    return args


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=" ".join)
@pytest.mark.parametrize("where", ["before", "after", "both"])
def test_config_and_verbose_before_and_after_every_subcommand(command, where):
    if where == "before":
        argv = ["--config", "/x.toml", "-v", *command]
    elif where == "after":
        argv = [*command, "--config", "/x.toml", "-v"]
    else:
        argv = ["-c", "/early.toml", "-v", *command, "-c", "/x.toml", "-v"]
    args = parse(argv)
    assert args.config == "/x.toml"
    assert args.verbose == (2 if where == "both" else 1)
    assert not [k for k in vars(args) if k.startswith("_g")]


@pytest.mark.parametrize("argv, command", [
    (["run"], "run"),
    (["-c", "/x.toml", "-vv", "run", "--emulate"], "run"),
    (["--config=/x.toml", "--lang", "vi", "--verbose", "status"], "status"),
    (["-c", "run", "status"], "status"),  # a config file called "run"
    (["config", "check"], "config"),
    (["--conf", "run", "status"], None),  # an abbreviation: the whole parser knows what it takes
    (["-cF", "run"], None),
    (["--", "run"], None),
    (["-h"], None),
    ([], None),
    (["runn"], "runn"),  # not a command: build_parser registers them all, argparse names them
])
def test_the_command_is_found_only_behind_plain_global_options(argv, command):
    assert cli.command_in(argv) == command


def test_every_command_is_registered_and_each_alone():
    assert [c[0] for c in SUBCOMMANDS] == list(cli.COMMANDS)
    whole = cli.build_parser()._subparsers._group_actions[0].choices
    assert list(whole) == list(cli.COMMANDS)
    for name in cli.COMMANDS:
        assert list(cli.build_parser(name)._subparsers._group_actions[0].choices) == [name]


def test_a_word_that_is_no_command_names_every_command(cli_env):
    r = subprocess.run([PYTHON, "-m", "node", "runn"], cwd=ROOT, env=cli_env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2
    assert "invalid choice: 'runn'" in r.stderr and "'provision'" in r.stderr and "'status'" in r.stderr


def test_defaults_without_global_options():
    args = parse(["status"])
    assert args.config is None and args.verbose == 0


def test_the_units_exec_start_parses():
    unit = (ROOT / "systemd" / "streetnode.service").read_text()
    line = next(x for x in unit.splitlines() if x.startswith("ExecStart="))
    argv = shlex.split(line.partition("=")[2])[1:]
    args = parse(argv)
    assert args.command == "run" and args.config == "/etc/streetnode/config.toml"


def test_run_config_in_a_real_process_reaches_the_config(tmp_path, cli_env):
    """What systemd runs: `streetnode run --config F` (before the fix: exit 2, unrecognized)."""
    missing = tmp_path / "nope.toml"
    r = subprocess.run([PYTHON, "-m", "node.cli", "run", "--config", str(missing)], env=cli_env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 78, r.stderr
    assert str(missing) in r.stderr and "not found" in r.stderr


@pytest.mark.parametrize(("argv", "scenario", "sensor"), [
    (["read", "--emulate", "weather"], "", "weather"),
    (["read", "--emulate", "storm", "weather"], "storm", "weather"),
    (["read", "weather", "--emulate"], "", "weather"),
    (["read", "--emulate"], "", None),
    (["read", "--emulate=storm"], "storm", None),
])
def test_emulate_never_swallows_the_sensor(argv, scenario, sensor):
    args = parse(argv)
    assert (args.emulate, args.sensor) == (scenario, sensor)


def test_emulate_takes_a_scenario_file():
    args = parse(["diag", "--emulate", "/tmp/my.toml"])
    assert args.emulate == "/tmp/my.toml"


@pytest.mark.parametrize("command", [["diag"], ["run"], ["scan"], ["identify"]])
def test_unknown_scenario_is_a_usage_error_naming_the_choices(command, cli_env):
    r = subprocess.run([PYTHON, "-m", "node.cli", *command, "--emulate", "nosuch"], env=cli_env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "unknown scenario 'nosuch'" in r.stderr
    assert "calm" in r.stderr and "storm" in r.stderr


def test_read_with_a_word_that_is_neither_names_both_lists(cli_env):
    r = subprocess.run([PYTHON, "-m", "node.cli", "read", "--emulate", "nosuch"], env=cli_env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "neither a scenario (calm, storm)" in r.stderr and "weather" in r.stderr


def test_readme_training_line_works_without_any_config(tmp_path, cli_env):
    """`streetnode diag --emulate storm --fault weather:absent` on a fresh laptop (no config)."""
    cli_env["XDG_STATE_HOME"] = str(tmp_path / "state")
    r = subprocess.run([PYTHON, "-m", "node.cli", "diag", "--emulate", "storm", "--fault", "weather:absent"],
                       env=cli_env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr  # the injected fault is a FAIL, nothing else breaks
    assert "FAIL  sensor.weather" in r.stdout or "FAIL  i2c.scan.bus1" in r.stdout
    assert "error" not in r.stderr.lower(), r.stderr
    assert "PASS  config" in r.stdout and "built-in emulated rig" in r.stdout


def test_builtin_emulated_rig_is_the_example_with_emulation_on(tmp_path, monkeypatch):
    import tomllib

    from node import config

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    cfg = config.builtin_emulated()
    example = config.validate(tomllib.loads(EXAMPLE_CONFIG.read_text()))
    assert cfg.emulation["enabled"] is True
    assert cfg.central["url"] is None  # buffer only: a laptop has no key for the example's central
    assert cfg.state_dir == tmp_path / "streetnode" / "emulated"
    assert cfg.sensors == example.sensors and cfg.storm == example.storm
    assert config.EXAMPLE_PATH.read_bytes() == EXAMPLE_CONFIG.read_bytes()


def test_an_explicit_missing_config_is_never_replaced_by_the_builtin(tmp_path, cli_env):
    r = subprocess.run([PYTHON, "-m", "node.cli", "read", "--emulate", "--config", str(tmp_path / "x.toml")],
                       env=cli_env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 78 and "not found" in r.stderr


def test_run_emulate_without_config_samples_into_the_user_state_dir(tmp_path, cli_env):
    cli_env["XDG_STATE_HOME"] = str(tmp_path / "state")
    proc = subprocess.Popen([PYTHON, "-m", "node.cli", "run", "--emulate", "storm"], env=cli_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        buffer = tmp_path / "state" / "streetnode" / "emulated" / "buffer.db"
        import time

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not buffer.exists() and proc.poll() is None:
            time.sleep(0.2)
        assert buffer.exists(), proc.stdout.read() if proc.poll() is not None else "no buffer yet"
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out
    assert "emulated hardware (storm" in out
