"""All configuration, from SKETCH_* environment variables (or a .env file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.choices import PhotoPrecision

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "cscan-sketchy-64.safetensors"
MIN_ADMIN_TOKEN_LENGTH = 16


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SKETCH_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("data"), description="indexes, uploaded photos, caches, the SQLite file")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite under data_dir")
    checkpoint: Path = Field(DEFAULT_CHECKPOINT, description="CSCAN checkpoint (.safetensors)")
    admin_token: SecretStr | None = Field(None, description="bearer token for /admin; >= 16 characters")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where the network runs")
    index_device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where FAISS searches")
    encoder_backend: Literal["auto", "torch", "onnx"] = Field(
        "auto", description="auto: ONNX Runtime on a CPU when installed, else PyTorch"
    )
    photo_precision: PhotoPrecision = Field(
        PhotoPrecision.FP32,
        description="the photo branch's arithmetic when indexing on ONNX Runtime: int8 builds about 1.6x "
        "as fast at equal dev mAP, once 'indexer export-onnx --int8-calibration PHOTOS' has made its graph",
    )
    onnx_cache_dir: Path | None = Field(
        None, description="exported ONNX branches, by checkpoint checksum; default: under data_dir"
    )
    max_upload_bytes: int = Field(5 * 1024 * 1024, gt=0)
    max_pixels: int = Field(40_000_000, gt=0, description="largest photo (width x height) decoded")
    max_sketch_pixels: int = Field(
        4_194_304, gt=0, description="largest sketch decoded (2048x2048): a drawing needs no more"
    )
    max_pending_encodes: int = Field(16, gt=0, description="queued sketch encodes before answering 429")
    preprocess_threads: int = Field(2, gt=0, le=64, description="threads decoding and preparing sketches")
    encode_max_batch: int = Field(16, gt=0, le=256, description="most sketches encoded in one network call")
    torch_threads: int = Field(2, gt=0, le=256)
    default_gallery: str | None = None
    edge_weights: Path | None = Field(None, description="weights file for the edge detector, if not bundled")
    embedded_worker: bool = Field(True, description="run the reindex worker inside the API process")
    access_log: bool = Field(True, description="log each request (logger app.access) once answered")
    ray_address: str | None = Field(
        None,
        description="reindex jobs encode on Ray: 'local', 'auto' or the cluster's host:port / ray:// address",
    )
    index_poll_seconds: float = Field(2.0, gt=0)
    thumbnail_size: int = Field(256, ge=32, le=1024)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:// or postgresql:// URL")
        return value

    # The data directory's layout: every folder under it is named here and nowhere else.
    @property
    def upload_dir(self) -> Path:
        """Uploaded photos, stored by content hash (shared by galleries holding the same photo)."""
        return self.data_dir / "uploads"

    @property
    def index_root(self) -> Path:
        """Index versions, one folder per gallery (catalog.builder.gallery_dir)."""
        return self.data_dir / "indexes"

    @property
    def lock_dir(self) -> Path:
        """Per-gallery build locks (catalog.locks)."""
        return self.data_dir / "locks"

    @property
    def trash_dir(self) -> Path:
        """Index folders of deleted galleries, moved aside until the deletion is committed."""
        return self.data_dir / "trash"

    @property
    def code_cache(self) -> Path:
        """Photo codes by content hash and model checksum: incremental builds."""
        return self.data_dir / "cache" / "codes"

    @property
    def thumb_cache(self) -> Path:
        """Thumbnails by content hash and size."""
        return self.data_dir / "cache" / "thumbs"

    @property
    def edge_cache(self) -> Path:
        return self.data_dir / "cache" / "edges"

    @property
    def onnx_cache(self) -> Path:
        return self.onnx_cache_dir or self.data_dir / "cache" / "onnx"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.embedded_database}"

    @property
    def embedded_database(self) -> Path:
        """The SQLite file used when no SKETCH_DATABASE_URL is set."""
        return self.data_dir / "sketch.db"

    @property
    def admin_enabled(self) -> bool:
        token = self.admin_token.get_secret_value() if self.admin_token else ""
        return len(token) >= MIN_ADMIN_TOKEN_LENGTH

    @property
    def admin_disabled_reason(self) -> str | None:
        if self.admin_token is None or not self.admin_token.get_secret_value():
            return "SKETCH_ADMIN_TOKEN is not set"
        if not self.admin_enabled:
            return f"SKETCH_ADMIN_TOKEN is shorter than {MIN_ADMIN_TOKEN_LENGTH} characters"
        return None


class SettingsError(SystemExit):
    """Raised with a message that names each bad SKETCH_* variable; exits the process."""


def describe_validation_error(exc: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        lines.append(f"  SKETCH_{field.upper()}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
