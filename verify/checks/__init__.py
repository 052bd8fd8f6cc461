"""The checks: each a test parametrized by runtime (and, for limits, by scenario)."""
