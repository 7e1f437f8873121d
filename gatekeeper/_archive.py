"""The audit archive: sealed events moved out of the store into JSON-lines files.

Redis memory is bounded by retention, not by history: ``gatekeeper audit
archive`` (and ``gatekeeper serve`` with ``audit.archive`` set) writes the
sealed events older than ``audit.keep`` to files in a directory, then trims
them from the store. The store keeps the last trimmed event's ``seq`` and
hash as the base the rest of the chain starts from, so the events left in
the store still verify alone, and ``gatekeeper audit verify --archive DIR``
walks the whole chain from the first event ever: the files, then the store.

Each file is ``audit-<first seq>-<last seq>.jsonl`` (12 digits each), one
event per line as ``{"body": {...}, "hash": "..."}``: ``body`` is the event
exactly as it was chained (``{"event": ..., "prev_hash": ..., "seq": ...}``,
whose canonical JSON the hash covers), so each file is readable with ``jq``
and checkable without gatekeeper. A file is written whole (to a temporary
name, flushed to disk, then renamed) before anything is trimmed: a crash
leaves the events in the store, or in the archive and still in the store
(the next run trims them), never in neither.

Example::

    result = archive_audit(store, "/var/lib/gatekeeper/audit", older_than=cutoff)
    print(result.archived, "events archived to", result.files)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import heapq
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ._canonical import canonical_json
from ._errors import GatekeeperError
from .audit import GENESIS, StoredEvent

if TYPE_CHECKING:
    from .store import Store

__all__ = [
    "ArchiveError",
    "ArchiveResult",
    "archive_anchors",
    "archive_audit",
    "archive_files",
    "archive_tail",
    "read_archive",
    "whole_chain",
    "whole_log",
    "write_archive",
]

#: Events per archive file at most (about 1 MB of typical events).
PER_FILE = 10_000

_NAME = re.compile(r"audit-(\d{12})-(\d{12})\.jsonl")


#: What a line of an archive may not exceed (an event is bounded far below it).
MAX_LINE = 64 * 1024 * 1024

#: What a crafted line can make the JSON reader raise.
_UNREADABLE = (ValueError, KeyError, TypeError, OverflowError, RecursionError)

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _open_plain(path: Path) -> BinaryIO:
    """``path`` for reading, refusing a symbolic link (an archive holds plain files)."""
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    return os.fdopen(fd, "rb")


def _lines(handle: BinaryIO) -> Iterator[bytes]:
    """The lines of ``handle``, each cut at :data:`MAX_LINE` + 1 bytes (never read whole)."""
    while True:
        line = handle.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            while True:  # skip the rest of that line
                rest = handle.readline(MAX_LINE)
                if not rest or rest.endswith(b"\n"):
                    break
        yield line


class ArchiveError(GatekeeperError):
    """The archive can't be read or written as it must be; nothing was trimmed."""


@dataclass(frozen=True)
class ArchiveResult:
    """What one archiving pass did."""

    archived: int = 0
    trimmed: int = 0
    files: list[Path] = field(default_factory=list)
    through: int = 0  # seq of the last event archived so far (0: none ever)


def archive_files(directory: str | os.PathLike[str]) -> list[tuple[int, int, Path]]:
    """The archive files of ``directory`` as ``(first seq, last seq, path)``, in order."""
    root = Path(directory)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        m = _NAME.fullmatch(path.name)
        if m:
            found.append((int(m.group(1)), int(m.group(2)), path))
    return sorted(found)


def read_archive(directory: str | os.PathLike[str]) -> Iterator[StoredEvent]:
    """Every archived event in chain order, as the store held it.

    A line that is not an archived event comes back as an entry whose body
    is that line, which :func:`~gatekeeper.audit.verify_chain` reports as
    unreadable; the entry id names the file and line.
    """
    for _, _, path in archive_files(directory):
        try:
            handle = _open_plain(path)
        except OSError as exc:
            raise ArchiveError(f"can't read {path}: {exc}") from exc
        with handle:
            for number, line in enumerate(_lines(handle), 1):
                where = f"{path.name}:{number}"
                if len(line) > MAX_LINE:
                    yield StoredEvent(where, b"(a line over the size limit)", "")
                    continue
                try:
                    item = json.loads(line)
                    body, hash_ = canonical_json(item["body"]), item["hash"]
                    if not isinstance(hash_, str):
                        raise TypeError("hash is not text")
                except _UNREADABLE:
                    yield StoredEvent(where, b"(not an archived event)", "")
                    continue
                yield StoredEvent(where, body, hash_)


def archive_tail(directory: str | os.PathLike[str]) -> tuple[int, str]:
    """``(seq, hash)`` of the newest archived event; ``(0, GENESIS)`` for an empty archive."""
    files = archive_files(directory)
    if not files:
        return 0, GENESIS
    _, last, path = files[-1]
    try:
        with _open_plain(path) as handle:
            final = b""
            for line in _lines(handle):
                final = line
        item = json.loads(final)
        seq, hash_ = int(item["body"]["seq"]), str(item["hash"])
    except (OSError, IndexError, *_UNREADABLE) as exc:
        raise ArchiveError(f"can't read the last event of {path}: {exc}") from exc
    if seq != last:
        raise ArchiveError(f"{path} ends at event #{seq}, not #{last} as its name says")
    return seq, hash_


def write_archive(directory: str | os.PathLike[str], entries: Sequence[StoredEvent]) -> Path:
    """Write ``entries`` (consecutive sealed events) as one archive file, durably."""
    root = Path(directory)
    first, last = _seq(entries[0]), _seq(entries[-1])
    target = root / f"audit-{first:012d}-{last:012d}.jsonl"
    part = root / f".{target.name}.part"
    if os.path.lexists(target):
        raise ArchiveError(
            f"{target} exists already: this directory holds another chain's archive "
            "(give each deployment, and each embedded store, a directory of its own)"
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)  # a crashed run's (never followed if it is a link)
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o640)
        with os.fdopen(fd, "wb") as out:
            for entry in entries:
                out.write(b'{"body":' + entry.body + b',"hash":"' + entry.hash.encode() + b'"}\n')
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(part, target)  # never replaces a file another run put there
        finally:
            os.unlink(part)
        _sync_directory(root)
    except FileExistsError as exc:
        raise ArchiveError(
            f"{target} appeared while it was written: another archiving run on {root}? "
            "nothing trimmed"
        ) from exc
    except OSError as exc:
        raise ArchiveError(f"can't write the audit archive {target}: {exc}") from exc
    return target


def chain_directory(directory: str | os.PathLike[str], chain: int) -> Path:
    """Where chain ``chain``'s files go: the directory itself for chain 0, else
    ``chain-N`` in it."""
    return Path(directory) if chain == 0 else Path(directory) / f"chain-{chain}"


def archive_audit(
    store: Store,
    directory: str | os.PathLike[str],
    *,
    older_than: dt.datetime,
    per_file: int = PER_FILE,
) -> ArchiveResult:
    """Archive the store's sealed events from before ``older_than``, then trim them.

    Each event is checked against the one before it first: a broken chain is
    an :class:`ArchiveError` and nothing past the break is archived or
    trimmed. ``directory`` must be this store's archive (its newest event is
    the last the store trimmed), or empty. With several audit chains, chain
    0 goes to ``directory`` and chain N to ``directory/chain-N``; the result
    adds them up (``through`` is chain 0's).
    """
    root = Path(directory)
    lock = getattr(store, "archive_lock", None)  # across hosts; the embedded store has none
    with _only_run(root), lock() if lock is not None else contextlib.nullcontext():
        results = [
            _archive_chain(store, chain_directory(root, c), c, older_than, per_file)
            for c in range(getattr(store, "audit_chains", 1))
        ]
        _keep_anchors(store, root)
    return ArchiveResult(
        sum(r.archived for r in results),
        sum(r.trimmed for r in results),
        [f for r in results for f in r.files],
        results[0].through,
    )


@contextlib.contextmanager
def _only_run(root: Path) -> Iterator[None]:
    """Hold ``root/.lock`` for one archiving run: a second run on this host waits for it,
    then reads where the first left off (two runs at once would each write the same
    events). Runs on different hosts need to be kept apart by their operator."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o640)
    except OSError as exc:
        raise ArchiveError(f"can't use the audit archive {root}: {exc}") from exc
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock, the O_EXCL writes remain
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _archive_chain(
    store: Store, root: Path, chain: int, older_than: dt.datetime, per_file: int
) -> ArchiveResult:
    tail_seq, tail_hash = archive_tail(root)
    base = store.audit_base(chain)
    if tail_seq < base.seq:
        raise ArchiveError(
            f"the archive {root} ends at event #{tail_seq} but this store trimmed up to "
            f"#{base.seq}: it is not this store's archive, or files are missing"
        )
    if tail_seq == base.seq and tail_hash != base.hash:
        raise ArchiveError(
            f"event #{tail_seq} in the archive {root} is not the one this store trimmed: "
            "another deployment's archive?"
        )
    cutoff = int(older_than.timestamp() * 1000)
    prev_seq, prev_hash = base.seq, base.hash
    batch: list[StoredEvent] = []
    done: tuple[StoredEvent, int] | None = None  # newest event safely in the archive, its ms
    files: list[Path] = []
    archived = trimmed = 0
    through = tail_seq

    def trim(entry: StoredEvent, at_ms: int) -> int:
        return store.audit_trim(entry, at=dt.datetime.fromtimestamp(at_ms / 1000, dt.timezone.utc))

    for entry in store.audit_entries(chain=chain):
        seq, at_ms = _check_link(entry, prev_seq, prev_hash)
        prev_seq, prev_hash = seq, entry.hash
        if seq <= tail_seq:  # archived by a run that stopped before trimming
            if seq == tail_seq and entry.hash != tail_hash:
                raise ArchiveError(
                    f"event #{seq} in the store differs from the archive {root}'s: "
                    "another deployment's archive?"
                )
            done = entry, at_ms
            continue
        if at_ms >= cutoff:
            break
        batch.append(entry)
        done = entry, at_ms
        through = seq
        if len(batch) >= per_file:
            files.append(write_archive(root, batch))
            archived += len(batch)
            trimmed += trim(*done)
            done, batch = None, []
    if batch:
        files.append(write_archive(root, batch))
        archived += len(batch)
    if done is not None:
        trimmed += trim(*done)
    return ArchiveResult(archived, trimmed, files, through)


def whole_chain(
    store: Store, directory: str | os.PathLike[str], chain: int = 0
) -> Iterator[StoredEvent]:
    """The archive's events, then the store's that follow them: ``chain`` from event #1.

    Events a crashed archiving run wrote to the archive but did not trim are
    read once (the archive's copy; the store's must be the same, or it is
    passed on for the check to report).
    """
    tail_seq, tail_hash = 0, GENESIS
    for entry in read_archive(chain_directory(directory, chain)):
        yield entry
        with contextlib.suppress(*_UNREADABLE):  # unreadable: the check reports it
            tail_seq, tail_hash = _seq(entry), entry.hash
    for entry in store.audit_entries(chain=chain):
        try:
            seq = _seq(entry)
        except _UNREADABLE:
            seq = tail_seq + 1
        if seq < tail_seq or (seq == tail_seq and entry.hash == tail_hash):
            continue
        yield entry


def whole_log(store: Store, directory: str | os.PathLike[str]) -> Iterator[tuple[int, StoredEvent]]:
    """Every chain from event #1 (archive, then store), merged by event time: ``(chain, entry)``."""

    def tagged(c: int) -> Iterator[tuple[int, int, StoredEvent]]:
        for entry in whole_chain(store, directory, c):
            try:
                at = int(json.loads(entry.body)["event"]["at"])
            except _UNREADABLE:
                at = 0
            yield at, c, entry

    chains = range(getattr(store, "audit_chains", 1))
    for _, c, entry in heapq.merge(*(tagged(c) for c in chains), key=lambda t: (t[0], t[1])):
        yield c, entry


ANCHORS = "anchors.jsonl"


def archive_anchors(directory: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """The signed anchors archived in ``directory``, oldest first, as ``(id, signed text)``."""
    path = Path(directory) / ANCHORS
    try:
        handle = _open_plain(path)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ArchiveError(f"can't read {path}: {exc}") from exc
    found = []
    with handle:
        for number, line in enumerate(_lines(handle), 1):
            try:
                item = json.loads(line)
                found.append((str(item["id"]), str(item["a"])))
            except _UNREADABLE as exc:
                raise ArchiveError(f"{path}:{number} is not an archived anchor") from exc
    return found


def _keep_anchors(store: Store, root: Path) -> None:
    """Append the store's anchors the archive does not hold yet (the store keeps a week's)."""
    have = archive_anchors(root)
    last = have[-1][0] if have else None
    new = [(i, a) for i, a in store.audit_anchors() if last is None or _id_key(i) > _id_key(last)]
    if not new:
        return
    path = root / ANCHORS
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, 0o640)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            for anchor_id, signed in new:
                out.write(json.dumps({"id": anchor_id, "a": signed}) + "\n")
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        raise ArchiveError(f"can't write {path}: {exc}") from exc


def _id_key(entry_id: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in entry_id.split("-"))
    except ValueError:
        return (-1,)


def _check_link(entry: StoredEvent, prev_seq: int, prev_hash: str) -> tuple[int, int]:
    """``(seq, event time in ms)`` of ``entry``, once it is shown to follow ``prev_hash``."""
    try:
        body: Any = json.loads(entry.body)
        seq, at_ms = int(body["seq"]), int(body["event"]["at"])
        linked = body["prev_hash"] == prev_hash
    except _UNREADABLE as exc:
        raise ArchiveError(
            f"audit entry {entry.entry_id} is not a readable event: nothing past event "
            f"#{prev_seq} archived (run `gatekeeper audit verify`)"
        ) from exc
    whole = hashlib.sha256(prev_hash.encode("ascii") + entry.body).hexdigest() == entry.hash
    if seq != prev_seq + 1 or not linked or not whole:
        raise ArchiveError(
            f"the audit chain is broken at entry {entry.entry_id} (event #{seq}): nothing past "
            f"event #{prev_seq} archived (run `gatekeeper audit verify`)"
        )
    return seq, at_ms


def _seq(entry: StoredEvent) -> int:
    return int(json.loads(entry.body)["seq"])


def _sync_directory(root: Path) -> None:
    try:
        fd = os.open(root, os.O_RDONLY)
    except OSError:
        return  # not every system can open a directory; the rename is done
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
