"""Named network links (rate, round trip, source) and the end-to-end latency of a split over one."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sc2edge.errors import Sc2edgeError


@dataclass(frozen=True)
class Link:
    """A network link as the latency model sees it: uplink throughput and round-trip time."""

    name: str
    label: str
    uplink_mbps: float
    rtt_ms: float
    source: str

    def transfer_ms(self, nbytes: float) -> float:
        """Time to push ``nbytes`` through the uplink, in ms."""
        return 8 * nbytes / (self.uplink_mbps * 1e6) * 1e3

    def end_to_end_ms(self, device_ms: float, nbytes: float, server_ms: float) -> float:
        """Device compute + transfer + one round trip + server compute."""
        return device_ms + self.transfer_ms(nbytes) + self.rtt_ms + server_ms

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def load_links(path: str | Path | None = None) -> dict[str, Link]:
    """Link profiles from ``path`` or the packaged ``links.yaml``."""
    if path is None:
        text = resources.files("sc2edge.bench").joinpath("links.yaml").read_text()
    else:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise Sc2edgeError(f"cannot read link profiles {path}: {exc}") from exc
    try:
        raw = yaml.safe_load(text)["links"]
        links = {name: Link(name=name, label=str(v.get("label", name)), uplink_mbps=float(v["uplink_mbps"]),
                            rtt_ms=float(v["rtt_ms"]), source=str(v.get("source", "")).strip())
                 for name, v in raw.items()}
    except (yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise Sc2edgeError(f"link profiles {path or 'links.yaml'} are malformed ({exc!r}); each entry needs "
                           "uplink_mbps and rtt_ms") from exc
    bad = [n for n, link in links.items() if link.uplink_mbps <= 0 or link.rtt_ms < 0]
    if bad:
        raise Sc2edgeError(f"link profiles with a non-positive rate or negative round trip: {', '.join(bad)}")
    return links


def select_links(links: dict[str, Link], names: list[str] | None) -> list[Link]:
    """The named profiles (all when ``names`` is empty), with a clear error for an unknown name."""
    if not names:
        return list(links.values())
    unknown = [n for n in names if n not in links]
    if unknown:
        raise Sc2edgeError(f'unknown link profile "{unknown[0]}" (available: {", ".join(links)})')
    return [links[n] for n in names]
