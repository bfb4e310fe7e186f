"""Media uploads: content probing and storage."""
