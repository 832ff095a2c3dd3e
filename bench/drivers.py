"""Drivers: cost of a BME280/PM2.5 reading over the emulated bus, ranger first-read latency
against gpiozero's own DistanceSensor.distance, and import cost of the drivers package."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import warnings


def _bme_reads_per_s(n: int) -> tuple[float, float]:
    from drivers.bme280 import BME280
    from drivers.emulator import EmulatedBME280, FakeSMBus

    bus = FakeSMBus({0x76: EmulatedBME280(timing=False)})
    sensor = BME280(bus, sleep=lambda s: None)
    sensor.read()
    t0 = time.perf_counter()
    for _ in range(n):
        sensor.read()
    driver = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()  # baseline: the raw transfers a reading needs, no maths
    for _ in range(n):
        bus.write_byte_data(0x76, 0xF2, 1)
        bus.write_byte_data(0x76, 0xF4, 0x25)
        bus.read_byte_data(0x76, 0xF3)
        bus.read_i2c_block_data(0x76, 0xF7, 8)
    return driver, n / (time.perf_counter() - t0)


def _ranger_first_read_s(ours: bool) -> float:
    from gpiozero import DistanceSensor

    from drivers.emulator.gpio import attach_sonar, mock_factory
    from drivers.flood import FloodRanger

    factory = mock_factory()
    attach_sonar(factory, 23, 24, lambda: 2.0)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if ours:
            dev = FloodRanger(23, 24, mount_height_cm=300, max_distance_cm=450, pin_factory=factory)
            dev.read()
        else:
            dev = DistanceSensor(echo=24, trigger=23, max_distance=4.5, pin_factory=factory)
            _ = dev.distance
    elapsed = time.perf_counter() - t0
    dev.close()
    return elapsed


def _import_s(stmt: str) -> float:
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", stmt], check=True)
        runs.append(time.perf_counter() - t0)
    return min(runs)


def run(quick: bool) -> list[dict]:
    n = 300 if quick else 3000
    bme, raw = _bme_reads_per_s(n)
    ours = statistics.median(_ranger_first_read_s(True) for _ in range(3))
    theirs = statistics.median(_ranger_first_read_s(False) for _ in range(3))
    imp = _import_s("import drivers.emulator, drivers.bme280, drivers.pm25, drivers.flood, drivers.rain")
    bare = _import_s("pass")
    return [
        {"metric": "BME280 readings over FakeSMBus", "value": bme, "unit": "/s",
         "baseline": "the same transfers without the driver", "baseline_value": raw, "ratio": bme / raw,
         "goal": "driver+emulator overhead visible, >=100/s"},
        {"metric": "ranger first read (emulated echo)", "value": ours, "unit": "s",
         "baseline": "gpiozero DistanceSensor.distance first read", "baseline_value": theirs,
         "ratio": ours / theirs, "goal": "< 1 s, below gpiozero's"},
        {"metric": "python start + import drivers (cold)", "value": imp, "unit": "s",
         "baseline": "python start alone", "baseline_value": bare, "ratio": imp / bare, "goal": "<= 0.5 s"},
    ]
