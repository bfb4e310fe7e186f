"""The Python services that subscribe to the broker."""
