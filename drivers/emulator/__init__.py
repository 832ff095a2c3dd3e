"""Register- and pin-level emulation of the node's hardware, driven by scenarios.

Importing this package is light: gpiozero is imported only when pins are used.
"""

from drivers.emulator.bme280_chip import REAL_CALIBRATION, EmulatedBME280, Weather
from drivers.emulator.fakebus import EmulatedChip, FakeSMBus
from drivers.emulator.pmsa003i_chip import EmulatedPMSA003I
from drivers.emulator.rig import EmulatedRig
from drivers.emulator.scenarios import Scenario, Truth, scenario

__all__ = ["REAL_CALIBRATION", "EmulatedBME280", "EmulatedChip", "EmulatedPMSA003I", "EmulatedRig",
           "FakeSMBus", "Scenario", "Truth", "Weather", "scenario"]
