"""The whole vehicle: every section, and the rules that span sections."""

from __future__ import annotations

from pydantic import Field, model_validator

from edge.config.bus import BusConfig
from edge.config.cameras import CameraConfig
from edge.config.demo import DemoConfig
from edge.config.drones import DroneLinkConfig
from edge.config.gb28181 import Gb28181Config
from edge.config.links import CentreConfig, LinkPolicyConfig, WanLinkConfig
from edge.config.model import ID_PATTERN, Model, Position
from edge.config.recorder import RecorderConfig
from edge.config.sync import SyncConfig
from edge.config.uplink import UplinkConfig


class VehicleConfig(Model):
    vehicle: str = Field(default="edge", pattern=ID_PATTERN)
    position: Position | None = None
    bus: BusConfig = BusConfig()
    cameras: list[CameraConfig] = []
    drones: list[DroneLinkConfig] = []
    links: list[WanLinkConfig] = []
    link_policy: LinkPolicyConfig = LinkPolicyConfig()
    centre: CentreConfig | None = None
    uplink: UplinkConfig = UplinkConfig()
    recorder: RecorderConfig = RecorderConfig()
    sync: SyncConfig = SyncConfig()
    gb28181: Gb28181Config = Gb28181Config()
    demo: DemoConfig = DemoConfig()

    @model_validator(mode="after")
    def _unique_ids(self) -> VehicleConfig:
        for section in ("cameras", "drones", "links"):
            seen: dict[str, int] = {}
            for i, item in enumerate(getattr(self, section)):
                if item.id in seen:
                    raise ValueError(f'{section}[{i}].id: "{item.id}" is already the id of '
                                     f"{section}[{seen[item.id]}]")
                seen[item.id] = i
        links = {link.id for link in self.links}
        for i, link_id in enumerate(self.link_policy.prefer):
            if link_id not in links:
                raise ValueError(f'link_policy.prefer[{i}]: no link "{link_id}" '
                                 f"(links: {', '.join(sorted(links)) or 'none'})")
        return self

    def camera(self, camera_id: str) -> CameraConfig:
        for c in self.cameras:
            if c.id == camera_id:
                return c
        raise KeyError(camera_id)
