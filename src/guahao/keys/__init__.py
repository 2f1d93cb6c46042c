"""Key rotation for field encryption: the re-encryption job and its command line (docs/KEYS.md)."""
