"""Typed wire payloads, one module per topic family. Unknown fields are refused.

`decode` turns raw MQTT bytes into a model or a `WireError` carrying the
contract's rejection code, so handlers only ever see models.
"""
