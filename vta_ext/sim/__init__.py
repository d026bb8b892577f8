"""Simulators of the accelerator: ``fsim`` (functional, bit-exact: the executable ISA
spec), and the cycle and energy models beside it."""
