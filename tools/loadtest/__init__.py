"""The load and fault suite: `python -m tools.loadtest` (docs/load.md).

Many device connections held over MQTT-over-WebSocket, steady chat traffic
between some of them, and parts of the system broken under that traffic;
prints memory, latency and, per fault, what was sent, stored, delivered, lost.

Modules, one job each: `provision` (users, devices, conversations through the
API), `holders` + `pool` (worker processes holding idle connections),
`traffic` (paced sends and arrivals), `ledger` (what happened to each
message), `stored` (what the database holds), `faults`, `phases` (a phase's
run and its accounting), `postgres` (the suite's own server), `usage`
(memory, CPU), `report`, `options`, `run`.
"""
