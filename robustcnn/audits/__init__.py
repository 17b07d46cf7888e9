"""Audits: clean accuracy, dataset bias, label issues, groups, confidence (each module registers its checks)."""
