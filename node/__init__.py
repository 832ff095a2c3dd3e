"""streetnode: the agent that runs on a street-pole Raspberry Pi."""

__version__ = "0.1.0"
