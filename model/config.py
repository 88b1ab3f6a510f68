"""Architecture and preprocessing settings stored inside every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from model.choices import Backbone, EdgeDetectorName, Fusion, parse_choice

VALID_BITS = (32, 64, 128)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a CSCAN network and its inputs exactly as trained."""

    bits: int = 64
    num_classes: int = 125
    backbone: Backbone = Backbone.LITE0
    image_size: int = 160
    share_sketch_edge: bool = True
    use_attention: bool = True
    use_edge: bool = True
    fusion: Fusion = Fusion.SUM
    hash_hidden: int = 512
    dropout: float = 0.2
    edge_detector: EdgeDetectorName = EdgeDetectorName.HED
    edge_size: int = 192
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.bits not in VALID_BITS:
            raise ValueError(f"bits must be one of {VALID_BITS}, got {self.bits}")
        # A config read from a checkpoint's JSON holds plain strings: they become the enums here.
        self.fusion = parse_choice(Fusion, self.fusion, "fusion")
        self.backbone = parse_choice(Backbone, self.backbone, "backbone")
        self.edge_detector = parse_choice(EdgeDetectorName, self.edge_detector, "edge detector")
        if self.image_size < 32:
            raise ValueError(f"image_size must be at least 32, got {self.image_size}")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError("class_names must have num_classes entries")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**data)
