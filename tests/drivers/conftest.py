"""Fixtures for the drivers' tests: emulated chips behind a FakeSMBus, a manual clock."""

from __future__ import annotations

import pytest

from drivers.emulator import EmulatedBME280, EmulatedPMSA003I, FakeSMBus


class ManualClock:
    """A clock tests move by hand; ``sleep`` advances it (for drivers with injected sleep)."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt

    sleep = advance


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def chip() -> EmulatedBME280:
    return EmulatedBME280(timing=False)


@pytest.fixture
def pm_chip() -> EmulatedPMSA003I:
    return EmulatedPMSA003I()


@pytest.fixture
def bus(chip, pm_chip) -> FakeSMBus:
    return FakeSMBus({0x76: chip, 0x12: pm_chip})
