"""maskwatch control room: every entrance on one screen, with history, live alerts and acknowledgement.

`edge-controlroom serve` stores what the kiosks publish (events, counts, status changes) in SQLite or
PostgreSQL and serves a web dashboard and a JSON API; `edge-alerts` is the live terminal view. Nothing
here imports numpy, OpenCV or LiteRT: the wire format comes from :mod:`maskwatch_protocol`.
"""

__version__ = "0.1.0"
