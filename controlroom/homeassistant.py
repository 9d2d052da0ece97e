"""Home Assistant MQTT discovery configs for a kiosk (edge-alerts --ha-discovery)."""

from __future__ import annotations

import re
from typing import Any, Dict, List, Tuple


def _ha_id(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", s)


def ha_discovery(
    prefix: str, ha_prefix: str, site: str, device: str, status: Dict[str, Any]
) -> List[Tuple[str, Dict[str, Any]]]:
    """Retained config messages so that Home Assistant's MQTT integration shows the kiosk as a device.

    Home Assistant then reads the kiosk's own topics (it needs an account that may read <prefix>/#
    and read/write <ha_prefix>/#: add-controlroom.sh --ha homeassistant).
    """
    base = "%s/%s/%s" % (prefix, site, device)
    node = "maskwatch_%s_%s" % (_ha_id(site), _ha_id(device))
    dev = {
        "identifiers": [node],
        "name": "maskwatch %s/%s" % (site, device),
        "manufacturer": "maskwatch",
        "model": "edge-maskd (%s)" % status.get("backend", "?"),
    }
    if status.get("version"):
        dev["sw_version"] = status["version"]
    avail = {
        "availability_topic": base + "/status",
        "payload_available": "online",
        "payload_not_available": "offline",
        "availability_template": "{{ 'online' if value_json.state == 'online' else 'offline' }}",
    }
    entities = [
        (
            "binary_sensor",
            "online",
            {
                "name": "Online",
                "state_topic": base + "/status",
                "device_class": "connectivity",
                "value_template": "{{ 'ON' if value_json.state == 'online' else 'OFF' }}",
            },
        ),
        (
            "sensor",
            "compliance",
            dict(
                avail,
                name="Compliance rate",
                state_topic=base + "/counts",
                unit_of_measurement="%",
                state_class="measurement",
                icon="mdi:face-mask",
                value_template="{{ (value_json.compliance_rate * 100) | round(1) "
                "if value_json.compliance_rate is not none else None }}",
            ),
        ),
        (
            "sensor",
            "people",
            dict(
                avail,
                name="People (last window)",
                state_topic=base + "/counts",
                state_class="measurement",
                unit_of_measurement="people",
                value_template="{{ value_json.total }}",
            ),
        ),
        (
            "sensor",
            "non_compliant",
            dict(
                avail,
                name="Non-compliant (last window)",
                state_topic=base + "/counts",
                state_class="measurement",
                unit_of_measurement="people",
                value_template="{{ value_json.total - value_json.counts.with_mask }}",
            ),
        ),
        (
            "sensor",
            "last_verdict",
            dict(
                avail,
                name="Last verdict",
                state_topic=base + "/events",
                json_attributes_topic=base + "/events",
                value_template="{{ value_json.verdict }}",
            ),
        ),
    ]
    out = []
    for component, key, cfg in entities:
        conf: Dict[str, Any] = dict(cfg)
        conf.update(unique_id="%s_%s" % (node, key), device=dev)
        out.append(("%s/%s/%s/%s/config" % (ha_prefix, component, node, key), conf))
    return out
