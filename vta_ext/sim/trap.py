"""The simulator's internal fault signal."""


class Trap(Exception):
    """Raised by an instruction's executor; the driver turns it into a SimulatorError that
    names the instruction index."""
