"""Integration with hospital information systems (HIS)."""
