"""Building a gallery's index: scan, hash, encode what is new, write a version, switch it on.

Crash safety: codes go to the code cache as they are computed; the image rows and the index-version row
are written in one transaction while the index directory is written and renamed into place; activation
follows in a second, tiny transaction. A build killed at any point leaves the active version and the
database as they were, and a rerun reuses every code already computed.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from catalog.code_cache import CodeCache
from catalog.db.models import Gallery, ImageExclusion, ImageRecord, IndexVersion
from catalog.enums import ImageOrigin, VersionState
from catalog.index_rows import write_rows
from catalog.index_store import IndexSpec, IndexType, Manifest, build_index, remove_version, write_version
from catalog.locks import gallery_lock
from catalog.ray_encoding import RayOptions, encode_on_ray
from catalog.scan import Candidate, printable, scan_source, storable
from catalog.settings import Settings
from model.edges.cache import EdgeCache
from model.encoding import ImageEncoder
from model.imageio import PHOTO_DECODING, ImageRejected, decode_photo, probe

log = logging.getLogger(__name__)
KEEP_VERSIONS = 2
CPU_BATCH, GPU_BATCH = 32, 256
HEARTBEAT_SECONDS = 5.0
BAD_NAME = "bad_name"  # a failed item's reason: a file name the catalog cannot store (rename the file)


@dataclass
class BuildReport:
    gallery: str
    version_id: int | None = None
    version_path: Path | None = None
    count: int = 0
    encoded: int = 0
    reused: int = 0
    removed: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    total: int = 0  # photos to index, after duplicates and deleted photos are left out
    done: int = 0  # of those, how many have a code so far (reused or encoded)

    def fail(self, path: Path | str, reason: str) -> None:
        """One photo that could not be indexed, and why (its path printable whatever its bytes); the
        build goes on without it."""
        self.failed.append({"path": printable(path), "reason": reason})


def gallery_dir(settings: Settings, name: str) -> Path:
    return settings.index_root / hashlib.sha1(name.encode()).hexdigest()[:12]


ProgressFn = Callable[[int, int], None]


class GalleryBuilder:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        encoder: ImageEncoder,
        batch_size: int | None = None,
        index_type: IndexType = IndexType.FLAT,
        show_progress: bool = True,
        ray: RayOptions | None = None,
        prefetch: bool = True,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.encoder = encoder
        # A GPU encodes (in mixed precision) far more photos per call than a CPU profits from.
        self.batch_size = batch_size or (GPU_BATCH if encoder.device.type == "cuda" else CPU_BATCH)
        self.index_type = index_type
        self.show_progress = show_progress
        self.ray = ray  # encode on a Ray cluster instead of in this process
        self.prefetch = prefetch  # prepare the next batch while the network runs (False: one after another)
        # Codes and edge maps depend on how photos are decoded (upright, reduced): its tag is in the path.
        self.codes = CodeCache(
            settings.code_cache / PHOTO_DECODING, encoder.photo_codes_key, encoder.bits // 8
        )
        self.edges = EdgeCache(settings.edge_cache / PHOTO_DECODING, encoder.edges) if encoder.edges else None

    # -- steps -------------------------------------------------------------------------------------------
    def _gallery(self, name: str, source: Path | None) -> Gallery:
        with self.sessions.begin() as session:
            gallery = session.scalar(select(Gallery).where(Gallery.name == name))
            if gallery is None:
                gallery = Gallery(name=name, source_dir=str(source) if source else None)
                session.add(gallery)
            elif source is not None and gallery.source_dir != str(source):
                gallery.source_dir = str(source)
            session.flush()
            session.expunge(gallery)
            return gallery

    def _candidates(self, gallery: Gallery) -> list[Candidate]:
        found: list[Candidate] = []
        if gallery.source_dir:
            source = Path(gallery.source_dir)
            if not source.is_dir():
                raise FileNotFoundError(f"gallery {gallery.name!r}: source folder {source} does not exist")
            found.extend(scan_source(source))
        with self.sessions() as session:
            uploads = session.scalars(
                select(ImageRecord).where(
                    ImageRecord.gallery_id == gallery.id, ImageRecord.origin == ImageOrigin.UPLOAD
                )
            ).all()
            found.extend(Candidate(Path(u.stored_path), u.label, ImageOrigin.UPLOAD) for u in uploads)
        return found

    def _excluded(self, gallery: Gallery) -> set[str]:
        """Photos deleted through the admin API that the source folder still holds."""
        with self.sessions() as session:
            rows = session.scalars(
                select(ImageExclusion.sha256).where(ImageExclusion.gallery_id == gallery.id)
            )
            return set(rows)

    def _fingerprint(
        self, candidates: list[Candidate], report: BuildReport, progress: ProgressFn | None
    ) -> list[Candidate]:
        """sha256 and header-checked size of every file; duplicates (same content) are kept once.

        Reading a large gallery takes minutes: progress is reported (0 of N done) every few seconds so
        the job's heartbeat stays fresh and no other worker takes it over as abandoned."""
        unique: dict[str, Candidate] = {}
        last_beat = time.monotonic()
        for cand in tqdm(candidates, desc="scan", unit="img", disable=not self.show_progress):
            if progress and time.monotonic() - last_beat > HEARTBEAT_SECONDS:
                progress(0, len(candidates))
                last_beat = time.monotonic()
            if not storable(cand.path):
                report.fail(cand.path, f"{BAD_NAME}: the name is not UTF-8 text, as the catalog stores it")
                continue
            try:
                data = cand.path.read_bytes()
            except OSError as exc:
                report.fail(cand.path, f"unreadable: {exc.strerror or exc}")
                continue
            cand.sha256 = hashlib.sha256(data).hexdigest()
            cand.size_bytes = len(data)
            if cand.sha256 in unique:
                continue
            try:
                header = probe(data, self.settings.max_pixels)
            except ImageRejected as exc:
                report.fail(cand.path, f"{exc.reason}: {exc}")
                continue
            cand.width, cand.height = header.width, header.height
            unique[cand.sha256] = cand
        return list(unique.values())

    @staticmethod
    def _advance(report: BuildReport, n: int, progress: ProgressFn | None) -> None:
        report.done += n
        if progress:
            progress(report.done, report.total)

    def _prepare(
        self, chunk: list[Candidate], report: BuildReport
    ) -> tuple[list[Candidate], tuple[np.ndarray, np.ndarray | None] | None]:
        """Decode a batch, draw (or reuse) its edge maps and make the network's inputs; the photos that
        cannot be read are reported and left out."""
        images: list[Image.Image] = []
        ok: list[Candidate] = []
        for cand in chunk:
            try:
                image = decode_photo(cand.path.read_bytes(), self.settings.max_pixels)
            except ImageRejected as exc:
                report.fail(cand.path, f"{exc.reason}: {exc}")
                continue
            except OSError as exc:
                report.fail(cand.path, f"unreadable: {exc}")
                continue
            images.append(image)
            ok.append(cand)
        if not images:
            return ok, None
        edges = self.edges.get_many([c.sha256 for c in ok], images) if self.edges else None
        return ok, self.encoder.photo_arrays(images, edges)

    def _encode(
        self, todo: list[Candidate], report: BuildReport, progress: ProgressFn | None
    ) -> dict[str, np.ndarray]:
        """Codes of ``todo``, cached as they come. With ``prefetch`` one thread prepares the next batch
        (decoding, edge maps, resizing) while the network encodes this one, so the cores the network
        leaves idle between its kernels do that work: Pillow and OpenCV's Canny release the GIL. (A
        learned edge detector, HED or PiDiNet, is a network too, and shares the cores with the encoder.)"""
        codes: dict[str, np.ndarray] = {}
        bar = tqdm(total=len(todo), desc="encode", unit="img", disable=not self.show_progress)
        chunks = [todo[start : start + self.batch_size] for start in range(0, len(todo), self.batch_size)]
        with ThreadPoolExecutor(1, thread_name_prefix="prepare") as pool:
            ahead = pool.submit(self._prepare, chunks[0], report) if self.prefetch and chunks else None
            for i, chunk in enumerate(chunks):
                if ahead is not None:
                    ok, arrays = ahead.result()
                    following = chunks[i + 1] if i + 1 < len(chunks) else None
                    ahead = pool.submit(self._prepare, following, report) if following else None
                else:
                    ok, arrays = self._prepare(chunk, report)
                if arrays is not None:
                    packed = self.encoder.encode_prepared_photos(*arrays).packed
                    for cand, code in zip(ok, packed, strict=True):
                        self.codes.put(cand.sha256, code)
                        codes[cand.sha256] = code
                bar.update(len(chunk))
                self._advance(report, len(chunk), progress)
        bar.close()
        return codes

    def _encode_on_ray(
        self, todo: list[Candidate], report: BuildReport, progress: ProgressFn | None
    ) -> dict[str, np.ndarray]:
        assert self.ray is not None
        codes: dict[str, np.ndarray] = {}

        def accept(sha256: str, code: np.ndarray) -> None:
            self.codes.put(sha256, code)
            codes[sha256] = code

        encode_on_ray(
            todo,
            self.settings,
            self.encoder,
            self.ray,
            accept,
            report.fail,
            lambda n: self._advance(report, n, progress),
            self.show_progress,
        )
        return codes

    def _commit(
        self, gallery: Gallery, indexed: list[Candidate], codes: dict[str, np.ndarray], report: BuildReport
    ) -> None:
        """Image rows and the version row in one transaction, the index written while it is open."""
        with self.sessions.begin() as session:
            existing = {
                img.sha256: img
                for img in session.scalars(select(ImageRecord).where(ImageRecord.gallery_id == gallery.id))
            }
            keep = {c.sha256 for c in indexed}
            for sha, old in existing.items():
                gone = old.origin == ImageOrigin.SOURCE or not Path(old.stored_path).exists()
                if sha not in keep and gone:
                    session.delete(old)  # vanished from the source folder, or an upload whose file is gone
                    report.removed += 1
            rows: list[ImageRecord] = []
            for cand in indexed:
                img = existing.get(cand.sha256)
                if img is None:
                    img = ImageRecord(
                        gallery_id=gallery.id,
                        stored_path=str(cand.path),
                        sha256=cand.sha256,
                        size_bytes=cand.size_bytes,
                        width=cand.width or None,
                        height=cand.height or None,
                        label=cand.label,
                        origin=cand.origin,
                    )
                    session.add(img)
                elif img.origin == ImageOrigin.SOURCE:
                    img.stored_path, img.label = str(cand.path), cand.label
                rows.append(img)
            session.flush()
            ids = np.array([r.id for r in rows], dtype=np.int64)
            matrix = (
                np.stack([codes[r.sha256] for r in rows])
                if rows
                else np.zeros((0, self.encoder.bits // 8), dtype=np.uint8)
            )
            spec = IndexSpec.for_type(self.index_type, len(rows))
            index = build_index(matrix, self.encoder.bits, spec)
            manifest = Manifest(
                model_checksum=self.encoder.checksum,
                bits=self.encoder.bits,
                count=len(rows),
                created=datetime.now(UTC).isoformat(),
                source=gallery.source_dir,
                factory=spec.factory,
                params=spec.params,
                gallery_id=gallery.id,
                photo_codes=self.encoder.photo_codes_key,
            )
            path = write_version(gallery_dir(self.settings, gallery.name), index, manifest)
            version = IndexVersion(
                gallery_id=gallery.id,
                model_checksum=self.encoder.checksum,
                bits=self.encoder.bits,
                count=len(rows),
                path=str(path),
                state=VersionState.READY,
            )
            session.add(version)
            session.flush()
            write_rows(session, version.id, ids)
            report.version_id, report.version_path, report.count = version.id, path, len(rows)

    def _activate(self, gallery: Gallery, version_id: int) -> None:
        with self.sessions.begin() as session:
            for old in session.scalars(
                select(IndexVersion).where(
                    IndexVersion.gallery_id == gallery.id, IndexVersion.state == VersionState.ACTIVE
                )
            ):
                old.state = VersionState.RETIRED
            version = session.get(IndexVersion, version_id)
            assert version is not None
            version.state, version.activated_at = VersionState.ACTIVE, datetime.now(UTC)

    def _prune(self, gallery: Gallery) -> None:
        """Keep the newest versions (the active one and its predecessor); drop the rest and orphans."""
        with self.sessions.begin() as session:
            versions = session.scalars(
                select(IndexVersion)
                .where(IndexVersion.gallery_id == gallery.id)
                .order_by(IndexVersion.created_at.desc(), IndexVersion.id.desc())
            ).all()
            for old in versions[KEEP_VERSIONS:]:
                if old.state != VersionState.ACTIVE:
                    remove_version(Path(old.path))
                    session.delete(old)
            known = {Path(v.path).name for v in versions[:KEEP_VERSIONS]}
        parent = gallery_dir(self.settings, gallery.name)
        for child in parent.iterdir() if parent.exists() else []:
            if child.name not in known:  # a crashed build's leftovers
                remove_version(child)

    # -- entry point -------------------------------------------------------------------------------------
    def build(
        self,
        gallery_name: str,
        source: Path | None = None,
        progress: ProgressFn | None = None,
    ) -> BuildReport:
        lock_dir = self.settings.lock_dir
        with gallery_lock(lock_dir, gallery_name):
            report = BuildReport(gallery_name)
            gallery = self._gallery(gallery_name, source.resolve() if source else None)
            candidates = self._fingerprint(self._candidates(gallery), report, progress)
            excluded = self._excluded(gallery)
            candidates = [c for c in candidates if c.sha256 not in excluded]
            codes: dict[str, np.ndarray] = {}
            todo = []
            for cand in candidates:
                cached = self.codes.get(cand.sha256)
                if cached is None:
                    todo.append(cand)
                else:
                    codes[cand.sha256] = cached
            report.reused, report.total = len(codes), len(candidates)
            self._advance(report, report.reused, progress)
            encode = self._encode_on_ray if self.ray is not None else self._encode
            codes.update(encode(todo, report, progress))
            report.encoded = len(codes) - report.reused
            indexed = [c for c in candidates if c.sha256 in codes]
            self._commit(gallery, indexed, codes, report)
            assert report.version_id is not None
            self._activate(gallery, report.version_id)
            self._prune(gallery)
            log.info(
                "gallery %s: version %s with %d images (%d encoded, %d reused, %d failed, %d removed)",
                gallery_name,
                report.version_id,
                report.count,
                report.encoded,
                report.reused,
                len(report.failed),
                report.removed,
            )
            return report
