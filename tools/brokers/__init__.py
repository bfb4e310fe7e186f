"""MQTT brokers other than the project's Mosquitto, and the probe that checks
each against what the design needs (docs/brokers.md, `tools/broker_probe.py`)."""
