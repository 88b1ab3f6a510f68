"""The one ranking path: exact asymmetric top k over the whole index, whatever the Hamming ties."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np
import pytest
import sqlalchemy.exc
from sqlalchemy.orm import Session, sessionmaker

from catalog.db.migrate import upgrade
from catalog.db.models import Gallery, ImageRecord, IndexVersion
from catalog.db.session import make_engine, make_session_factory
from catalog.index_rows import photos_at, write_rows
from catalog.index_store import IndexSpec, LoadedIndex, Manifest, build_index
from catalog.ranking import BOUND_SLACK, DistanceBound, NotIndexed, exact_candidates, search_codes, similar_to
from model.hashing import asymmetric_distances, pack_bits, unpack_bits

BITS = 64


def tied_codes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Codes with the tie structure of a collapsed model: a few class codes, each repeated many times
    with a bit or two flipped."""
    centres = rng.integers(0, 2, (4, BITS), dtype=np.uint8)
    codes = centres[rng.integers(0, 4, n)].copy()
    flips = rng.integers(0, BITS, (n, 2))
    keep = rng.random(n) < 0.5
    for row in np.flatnonzero(keep):
        codes[row, flips[row]] ^= 1
    return pack_bits(codes)


def loaded(codes: np.ndarray, gallery_id: int = 1, version_id: int = 1) -> LoadedIndex:
    index = build_index(codes, BITS, IndexSpec("BFlat"))
    manifest = Manifest("m", BITS, len(codes), "now", None)
    return LoadedIndex("g", gallery_id, version_id, manifest, index)


def exhaustive(index: LoadedIndex, continuous: np.ndarray) -> np.ndarray:
    bits = unpack_bits(index.codes_at(np.arange(index.count)), BITS)
    return asymmetric_distances(continuous.reshape(1, -1), bits)[0]


def one_bit_away(rng: np.random.Generator, query_bits: np.ndarray, n: int) -> np.ndarray:
    """``n`` codes one bit from the query's, each in a random bit: a whole Hamming shell that ties."""
    codes = np.repeat(query_bits[None], n, axis=0)
    codes[np.arange(n), rng.integers(0, BITS, n)] ^= 1
    return codes


@pytest.mark.parametrize("seed", range(3))
def test_the_distance_bound_is_the_nearest_code_outside_each_radius(seed: int) -> None:
    # Every code of 10 bits: outside radius r the nearest is what the bound says (to float32), and the
    # radius asked for a distance is the smallest whose outside cannot beat it.
    bits = 10
    rng = np.random.default_rng(seed)
    continuous = rng.uniform(0.01, 0.99, bits).astype(np.float32)
    every = (np.arange(2**bits)[:, None] >> np.arange(bits)) & 1
    distances = ((continuous.astype(np.float64) - every) ** 2).sum(axis=1)
    hamming = (every != (continuous >= 0.5)).sum(axis=1)
    bound = DistanceBound(continuous)
    outside = [bound.outside(r) for r in range(bits + 1)]
    for r in range(bits):
        assert outside[r] - BOUND_SLACK == pytest.approx(distances[hamming > r].min(), abs=BOUND_SLACK)
    assert outside[bits] == np.inf  # no code is more than every bit away
    for distance in rng.uniform(outside[0], distances.max(), 50):
        r = bound.radius_for(float(distance))
        assert outside[r] >= distance and (r == 0 or outside[r - 1] < distance)


@pytest.mark.parametrize("seed", range(5))
def test_ties_past_the_depth_are_widened_to_the_exact_top_k(seed: int) -> None:
    rng = np.random.default_rng(seed)
    query_bits = rng.integers(0, 2, BITS, dtype=np.uint8)
    noise = rng.integers(0, 2, (3000, BITS), dtype=np.uint8)
    codes = pack_bits(np.concatenate([noise, one_bit_away(rng, query_bits, 1000)]))
    index = loaded(codes)
    # the sketch is sure of some bits and unsure of others: which bit differs decides the order
    continuous = np.abs(query_bits - rng.uniform(0.02, 0.45, BITS)).astype(np.float32)
    packed = pack_bits(query_bits[None])[0]
    found = exact_candidates(index, packed, continuous, k=20, depth=30)
    assert found.exact and len(found.positions) >= 1000  # the whole one-bit shell was taken in
    truth = np.sort(exhaustive(index, continuous))[:20]
    np.testing.assert_allclose(found.distances[:20], truth, rtol=1e-5)
    # FAISS's first 30 of the 1000 tied codes alone would have missed most of the true top 20
    hamming_only = index.search(packed[None], 30)[1][0]
    assert len(set(hamming_only.tolist()) & set(found.positions[:20].tolist())) < 20


def test_the_result_does_not_depend_on_row_order() -> None:
    rng = np.random.default_rng(7)
    query_bits = rng.integers(0, 2, BITS, dtype=np.uint8)
    codes = pack_bits(
        np.concatenate(
            [rng.integers(0, 2, (2000, BITS), dtype=np.uint8), one_bit_away(rng, query_bits, 1000)]
        )
    )
    continuous = np.abs(query_bits - rng.uniform(0.02, 0.45, BITS)).astype(np.float32)
    packed = pack_bits(query_bits[None])[0]
    ids = np.arange(1, 3001, dtype=np.int64)
    perm = rng.permutation(3000)
    a = exact_candidates(loaded(codes), packed, continuous, k=10, depth=15)
    b = exact_candidates(loaded(codes[perm]), packed, continuous, k=10, depth=15)
    np.testing.assert_allclose(a.distances[:10], b.distances[:10], rtol=1e-6)
    # the same photos, whatever order the index holds them in: all those strictly nearer than the 10th
    # (the codes equal to the 10th's are interchangeable: only their bits are stored)
    tenth = a.distances[9]
    top_a = {int(ids[p]) for p, d in zip(a.positions, a.distances, strict=True) if d < tenth - 1e-6}
    top_b = {int(ids[perm][p]) for p, d in zip(b.positions, b.distances, strict=True) if d < tenth - 1e-6}
    assert top_a == top_b and len(top_a) >= 1


def test_a_bound_on_the_candidates_is_reported_as_inexact(monkeypatch: pytest.MonkeyPatch) -> None:
    import catalog.ranking

    monkeypatch.setattr(catalog.ranking, "MAX_CANDIDATES", 40)
    rng = np.random.default_rng(1)
    query_bits = rng.integers(0, 2, BITS, dtype=np.uint8)
    codes = pack_bits(one_bit_away(rng, query_bits, 500))
    continuous = np.abs(query_bits - rng.uniform(0.02, 0.45, BITS)).astype(np.float32)
    packed = pack_bits(query_bits[None])[0]
    found = exact_candidates(loaded(codes), packed, continuous, k=10, depth=20)
    assert not found.exact


@pytest.fixture()
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    return make_session_factory(make_engine(url))


def test_search_and_similar_share_one_path_and_leave_the_photo_out(sessions: sessionmaker[Session]) -> None:
    rng = np.random.default_rng(3)
    codes = tied_codes(rng, 200)
    with sessions.begin() as session:
        gallery = Gallery(name="g")
        session.add(gallery)
        session.flush()
        for i in range(200):
            session.add(
                ImageRecord(
                    gallery_id=gallery.id,
                    label="x",
                    stored_path=f"/p/{i}.jpg",
                    sha256=f"{i:064d}",
                    size_bytes=1,
                )
            )
        session.flush()
        gallery_id = gallery.id
    with sessions.begin() as session:
        ids = np.array(sorted(r.id for r in session.query(ImageRecord)), dtype=np.int64)
        version = IndexVersion(
            gallery_id=gallery_id, model_checksum="m", bits=BITS, count=200, path="/nowhere"
        )
        session.add(version)
        session.flush()
        write_rows(session, version.id, ids)
        version_id = version.id
    index = loaded(codes, gallery_id, version_id)
    ranking = similar_to(sessions, index, int(ids[0]), k=10)
    assert ranking.exact and len(ranking.images) == 10
    assert int(ids[0]) not in {r.image_id for r in ranking.images}
    # the photo's own bits as a sketch code: the same ranking as search_codes with it, minus itself
    bits = unpack_bits(codes[:1], BITS)[0].astype(np.float32)
    direct = search_codes(sessions, index, codes[0], bits, k=11).images
    assert [r.image_id for r in direct if r.image_id != ids[0]][:10] == [r.image_id for r in ranking.images]
    # its similarity is 1 - Hamming / bits
    assert all(r.similarity(BITS) == pytest.approx(1 - r.hamming_distance / BITS) for r in ranking.images)
    with pytest.raises(NotIndexed):
        similar_to(sessions, index, int(ids.max()) + 1, k=5)


def gallery_of(sessions: sessionmaker[Session], codes: np.ndarray) -> tuple[LoadedIndex, list[int]]:
    """A gallery with one photo per code, its index version active at those positions: the index and
    the photos' ids by position."""
    with sessions.begin() as session:
        gallery = Gallery(name="g")
        session.add(gallery)
        session.flush()
        records = [
            ImageRecord(
                gallery_id=gallery.id, label="x", stored_path=f"/p/{i}.jpg", sha256=f"{i:064d}", size_bytes=1
            )
            for i in range(len(codes))
        ]
        session.add_all(records)
        session.flush()
        version = IndexVersion(
            gallery_id=gallery.id, model_checksum="m", bits=BITS, count=len(codes), path="/nowhere"
        )
        session.add(version)
        session.flush()
        ids = [r.id for r in records]
        write_rows(session, version.id, np.array(ids, dtype=np.int64))
        gallery_id, version_id = gallery.id, version.id
    return loaded(codes, gallery_id, version_id), ids


def test_photos_deleted_since_the_build_leave_the_exact_top_k_of_the_rest(
    sessions: sessionmaker[Session],
) -> None:
    """The first candidates are proven exact for the k rows a search returns; when photos deleted since
    the build are passed over, the rows read after them are proven too. Before, the proof covered k + 16
    rows whatever was deleted, and the rows read past them came from FAISS's arbitrary part of a tied
    Hamming shell."""
    rng = np.random.default_rng(11)
    query_bits = rng.integers(0, 2, BITS, dtype=np.uint8)
    weights = np.linspace(0.05, 0.9, BITS)  # |1 - 2c| per bit: the sketch is unsure of the first bits
    continuous = np.abs(query_bits - (1 - weights) / 2).astype(np.float32)
    one = np.repeat(query_bits[None], 30, axis=0)  # Hamming 1, in the four least sure bits: the nearest
    one[np.arange(30), np.arange(30) % 4] ^= 1
    pairs = np.repeat(query_bits[None], 900, axis=0)  # Hamming 2: a shell FAISS cuts at the depth
    for row in range(900):
        pairs[row, rng.choice(40, 2, replace=False)] ^= 1  # varied distances within the shell
    codes = pack_bits(np.concatenate([one, pairs, rng.integers(0, 2, (300, BITS), dtype=np.uint8)]))
    index, ids = gallery_of(sessions, codes)
    packed = pack_bits(query_bits[None])[0]
    deleted = ids[:30]  # every Hamming-1 photo: the answer comes from the cut shell
    with sessions.begin() as session:
        for image_id in deleted:
            session.delete(session.get(ImageRecord, image_id))
    ranking = search_codes(sessions, index, packed, continuous, k=5)
    alive = np.ones(len(codes), bool)
    alive[:30] = False
    truth = np.sort(exhaustive(index, continuous)[alive])[:5]
    assert ranking.exact
    np.testing.assert_allclose([r.distance for r in ranking.images], truth, rtol=1e-5)
    assert not {r.image_id for r in ranking.images} & set(deleted)


def test_a_search_passing_over_no_unproven_row_scans_once_and_deleted_photos_settle_in_a_few_passes(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deleted photo among the rows already proven costs no second pass; a gallery most of whose
    photos were deleted since the build settles in a few passes and a few queries, with the exact top
    k of what is left, and "more like this" leaves its own photo out all the same."""
    import catalog.ranking

    rng = np.random.default_rng(5)
    codes = tied_codes(rng, 3000)
    index, ids = gallery_of(sessions, codes)
    packed = codes[0]
    continuous = np.clip(unpack_bits(codes[:1], BITS)[0] + rng.normal(0, 0.2, BITS), 0.01, 0.99)
    continuous = continuous.astype(np.float32)
    scans, queries = [], []
    monkeypatch.setattr(index, "search", lambda *a: scans.append(a) or LoadedIndex.search(index, *a))
    counted = catalog.ranking.photos_at
    monkeypatch.setattr(catalog.ranking, "photos_at", lambda *a: queries.append(a) or counted(*a))
    first = search_codes(sessions, index, packed, continuous, k=10)
    assert first.exact and len(scans) == 1 and len(queries) == 1
    top = np.argsort(exhaustive(index, continuous), kind="stable")
    with sessions.begin() as session:  # one of the top 10: read within the rows the first pass proved
        session.delete(session.get(ImageRecord, ids[int(top[3])]))
    scans.clear()
    again = search_codes(sessions, index, packed, continuous, k=10)
    assert again.exact and len(scans) == 1 and ids[int(top[3])] not in {r.image_id for r in again.images}
    gone = set(rng.choice(3000, 2700, replace=False).tolist()) - {0, int(top[3])}
    with sessions.begin() as session:
        for row in gone:
            session.delete(session.get(ImageRecord, ids[row]))
    scans.clear()
    queries.clear()
    ranking = search_codes(sessions, index, packed, continuous, k=10)
    alive = np.array([row not in gone and row != int(top[3]) for row in range(3000)])
    truth = np.sort(exhaustive(index, continuous)[alive])[:10]
    assert ranking.exact and len(ranking.images) == 10
    np.testing.assert_allclose([r.distance for r in ranking.images], truth, rtol=1e-5)
    assert len(scans) <= 6 and len(queries) <= 30, (len(scans), len(queries))
    alike = similar_to(sessions, index, ids[0], k=10)
    assert alike.exact and len(alike.images) == 10 and ids[0] not in {r.image_id for r in alike.images}
    hamming = unpack_bits(codes, BITS) != unpack_bits(codes[:1], BITS)
    alive[0] = False
    assert [r.hamming_distance for r in alike.images] == sorted(hamming.sum(axis=1)[alive])[:10]


def test_the_command_line_search_refuses_k_below_one(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from indexer.cli import app

    result = CliRunner().invoke(
        app, ["search", "--gallery", "g", "--sketch", str(tmp_path / "s.png"), "-k", "0"]
    )
    assert result.exit_code == 2 and "-k" in result.output


def test_searches_on_pool_threads_use_the_index_s_faiss_thread_count() -> None:
    """OpenMP's thread count is per thread: set once on the main thread, it left the service's pool
    threads (where searches run) at one FAISS thread per core, whose idle team then spun against the
    encoder. Each search now sets it on the thread that searches."""
    rng = np.random.default_rng(0)
    index = loaded(tied_codes(rng, 2000))
    index.threads = 1
    query = index.codes_at(np.array([0]))[0]

    def search_on_a_fresh_thread(search: str) -> int:
        faiss.omp_set_num_threads(3)  # what a new thread starts with on a 3-core machine
        if search == "knn":
            index.search(query.reshape(1, -1), 10)
        else:
            index.within(query, 2)
        return faiss.omp_get_max_threads()

    for search in ("knn", "range"):
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(search_on_a_fresh_thread, search).result() == 1


def test_photos_at_resolves_positions_on_sqlite_and_postgres(database_url: str) -> None:
    """The search's row lookup (SQL compiled once per dialect and count, run on a DBAPI cursor): each
    position gives its own photo; a deleted photo, another gallery's row and, with a label, other labels
    are left out; any count of positions, any order, and a label with quotes in it."""
    upgrade(database_url)
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        mine, other = Gallery(name="mine"), Gallery(name="other")
        session.add_all([mine, other])
        session.flush()
        records = [
            ImageRecord(
                gallery_id=mine.id if i < 6 else other.id,
                label="it's a cat" if i % 2 else "dog",
                stored_path=f"/p/{i}.jpg",
                sha256=f"{i:064d}",
                size_bytes=1,
            )
            for i in range(8)
        ]
        session.add_all(records)
        session.flush()
        version = IndexVersion(gallery_id=mine.id, model_checksum="m", bits=BITS, count=8, path="/nowhere")
        session.add(version)
        session.flush()
        # positions hold the photos in reverse order; 6 and 7 (wrongly) hold the other gallery's
        write_rows(session, version.id, np.array([r.id for r in reversed(records[:6])] + [records[6].id, 7]))
        ids, mine_id, version_id = [r.id for r in records], mine.id, version.id
    try:
        found = photos_at(engine, version_id, mine_id, [0, 5, 2, 6, 7, 40])
        assert {p: (r.image_id, r.label, r.stored_path) for p, r in found.items()} == {
            0: (ids[5], "it's a cat", "/p/5.jpg"),
            5: (ids[0], "dog", "/p/0.jpg"),
            2: (ids[3], "it's a cat", "/p/3.jpg"),
        }
        assert all(r.position == p for p, r in found.items())
        cats = photos_at(engine, version_id, mine_id, list(range(8)), "it's a cat")
        assert sorted(r.image_id for r in cats.values()) == [ids[1], ids[3], ids[5]]
        # a labelled search's thousands of positions: compiled for the next power of two, padded
        many = photos_at(engine, version_id, mine_id, list(range(2999, -1, -1)), "it's a cat")
        assert many == cats
        assert sorted(photos_at(engine, version_id, mine_id, list(range(129)))) == [0, 1, 2, 3, 4, 5]
        with sessions.begin() as session:
            session.delete(session.get(ImageRecord, ids[3]))
        assert sorted(photos_at(engine, version_id, mine_id, [2, 0, 1])) == [0, 1]  # deleted: gone
        assert photos_at(engine, version_id, mine_id, []) == {}
    finally:
        engine.dispose()


def test_a_failing_row_lookup_raises_sqlalchemy_s_error_and_a_dropped_connection_is_replaced(
    database_url: str,
) -> None:
    """The lookup runs on a DBAPI cursor, yet its errors are SQLAlchemy's (the service answers those
    503 database_unavailable, never 500), and a connection the server dropped does not fail a search."""
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        if database_url.startswith("postgresql"):
            with engine.connect() as conn:  # the pool's connection, killed by the server
                pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            killer = make_engine(database_url)
            with killer.connect() as conn:
                conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")  # type: ignore[arg-type]
            killer.dispose()
            assert photos_at(engine, 1, 1, [0, 1]) == {}
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE index_entries RENAME TO index_entries_gone")
        with pytest.raises(sqlalchemy.exc.DBAPIError) as raised:
            photos_at(engine, 1, 1, [0, 1])
        assert isinstance(raised.value.orig, engine.dialect.loaded_dbapi.Error)
    finally:
        engine.dispose()


def test_faiss_s_thread_count_is_set_once_per_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each FAISS call releases and retakes the GIL, so a search sets the OpenMP thread count only on a
    thread where it has not set it yet (and the count stays right)."""
    rng = np.random.default_rng(0)
    index = loaded(tied_codes(rng, 500))
    index.threads = 1
    query = index.codes_at(np.array([0]))[0]
    calls: list[int] = []
    real = faiss.omp_set_num_threads
    monkeypatch.setattr(faiss, "omp_set_num_threads", lambda n: (calls.append(n), real(n)))

    def searches() -> int:
        faiss.omp_set_num_threads(3)  # a fresh thread's count on a 3-core machine (counted too)
        for _ in range(3):
            index.search(query.reshape(1, -1), 10)
            index.within(query, 2)
        return faiss.omp_get_max_threads()

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(searches).result() == 1
    assert calls == [3, 1]  # the thread's own setting, then the index's once for six searches
