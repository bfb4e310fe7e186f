"""The one place that knows MQTT: topics, wire models, the async client and the
service runtime. See docs/architecture.md ("The bridge")."""
