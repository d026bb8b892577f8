"""Ternary Relax operators and passes."""
