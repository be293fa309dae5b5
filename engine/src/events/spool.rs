//! The spool: play events that the store could not take yet, kept on disk in
//! the order they came until it takes them.
//!
//! # Layout
//! A spool is one directory (a station's own, such as `data/spool/main/`):
//! - `NNNNNNNNNNNNNNNNNNNN.spool`: segment files, numbered in the order they
//!   were started. A segment is the 8 bytes `SFSPOOL1` followed by records;
//!   a record is its payload's length (`u32`, little-endian), a CRC-32 of that
//!   length field and the payload (`u32`, little-endian), and the payload: the
//!   event's JSON. Records are only ever appended. A new segment is started when
//!   the last one reaches [`SpoolOptions::segment_bytes`]; a segment is deleted
//!   once all its records are replayed.
//! - `cursor`: where replay stands (segment number and byte offset of the next
//!   record), with its own CRC-32.
//! - `NNNNNNNNNNNNNNNNNNNN.corrupt`: bad bytes found in that segment, moved
//!   aside for an operator to look at; never read again.
//! - `lock`: held (an exclusive file lock) while a process has the spool open.
//!
//! # Durability
//! [`Spool::append`] returns once the records are written and synced to disk
//! (`fdatasync`): an appended event survives a crash of the process or of the
//! machine. [`Spool::commit`] records the new position without syncing: a crash
//! soon after a commit may replay the last committed events once more, which
//! the sinks ignore (they are idempotent). Opening a spool checks every record
//! and moves what is torn or corrupt aside (see [`Spool::open`]).

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::id::EventId;
use super::model::PlayEvent;

/// The first bytes of every segment file.
const SEGMENT_MAGIC: &[u8; 8] = b"SFSPOOL1";
/// The first bytes of the cursor file.
const CURSOR_MAGIC: &[u8; 8] = b"SFCURSR1";
/// Length of a segment's header (its magic).
const SEGMENT_HEADER: u64 = SEGMENT_MAGIC.len() as u64;
/// Length of a record's header: payload length and checksum.
const RECORD_HEADER: usize = 8;
/// The largest payload of one record. An event is far smaller; a length above
/// this in a file is corruption.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// The smallest segment size the spool uses, whatever the options say.
const MIN_SEGMENT_BYTES: u64 = 4096;
/// Buffer of the reader that replays a segment.
const READ_BUFFER_BYTES: usize = 64 * 1024;

const SEGMENT_EXTENSION: &str = "spool";
const CORRUPT_EXTENSION: &str = "corrupt";
const REWRITE_EXTENSION: &str = "rewrite";
const CURSOR_FILE: &str = "cursor";
const CURSOR_TEMP_FILE: &str = "cursor.tmp";
const CURSOR_CORRUPT_FILE: &str = "cursor.corrupt";
const LOCK_FILE: &str = "lock";

/// Options of a [`Spool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolOptions {
    /// The most bytes the segment files may take together; an append that would
    /// pass it fails with [`SpoolError::Full`]. Default 256 MiB.
    pub max_bytes: u64,
    /// Size past which the next append starts a new segment. Replayed segments
    /// are deleted whole, so this is also how much replayed data may stay on
    /// disk. Default 4 MiB; at least 4 KiB is used.
    pub segment_bytes: u64,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        Self::with_max_bytes(256 * 1024 * 1024)
    }
}

impl SpoolOptions {
    /// A spool of at most `max_bytes`, with segments of a sixteenth of it
    /// (between 64 KiB and 4 MiB).
    pub fn with_max_bytes(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            segment_bytes: (max_bytes / 16).clamp(64 * 1024, 4 * 1024 * 1024),
        }
    }
}

/// Why a spool operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    #[error("cannot {operation} {}", .path.display())]
    Io {
        /// What the spool was doing, such as "sync".
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the spool {} is open in another process", .path.display())]
    Locked { path: PathBuf },
    #[error(
        "the spool {} is full: {size_bytes} of its {max_bytes} bytes are used and {needed_bytes} more are needed",
        .path.display()
    )]
    Full {
        path: PathBuf,
        needed_bytes: u64,
        size_bytes: u64,
        max_bytes: u64,
    },
    #[error("cannot encode event {id} for the spool")]
    Encode {
        id: EventId,
        #[source]
        source: serde_json::Error,
    },
    #[error("event {id} takes {bytes} bytes, more than the {max} bytes a spool record holds")]
    RecordTooLarge {
        id: EventId,
        bytes: usize,
        max: usize,
    },
    #[error("cannot commit {requested} events: the last peek returned {peeked}")]
    CommitBeyondPeek { requested: usize, peeked: usize },
    #[error(
        "the spool {} holds a record at offset {offset} that stays unreadable after a repair ({kind})",
        .path.display()
    )]
    Unreadable {
        path: PathBuf,
        offset: u64,
        kind: CorruptionKind,
    },
    /// The commit took effect in this process, but the spool could not record
    /// it on disk: after a restart the committed events are replayed once
    /// more, which the sinks ignore.
    #[error("the commit took effect but cannot {operation} {}", .path.display())]
    CommitNotRecorded {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl SpoolError {
    fn io<'a>(operation: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Self + 'a {
        move |source| Self::Io {
            operation,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether the spool refused an append because it reached its bound.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full { .. })
    }
}

/// What was wrong with bytes found in a spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CorruptionKind {
    /// The last record ends past the end of the file: a write cut short by a
    /// crash.
    TornTail,
    /// A record's checksum does not match its bytes.
    Checksum,
    /// A record's length is zero or larger than [`MAX_RECORD_BYTES`].
    BadLength,
    /// The checksum matches but the payload is not a play event.
    Undecodable,
    /// The file does not start as a spool segment does.
    BadSegmentHeader,
    /// The cursor file, or the position it holds, cannot be used; replay starts
    /// at the oldest record kept (the sinks ignore what they already have).
    BadCursor,
}

impl CorruptionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TornTail => "torn tail",
            Self::Checksum => "checksum mismatch",
            Self::BadLength => "bad record length",
            Self::Undecodable => "not a play event",
            Self::BadSegmentHeader => "not a spool segment",
            Self::BadCursor => "unusable cursor",
        }
    }
}

impl fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bad bytes found in a spool: each report is one bad record, or one run of
/// bytes that cannot be split into records (a torn or garbage tail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolCorruption {
    /// The file the bytes were in.
    pub file: PathBuf,
    /// Where they started in it.
    pub offset: u64,
    pub bytes: u64,
    pub kind: CorruptionKind,
    /// Where the bytes were moved to; `None` when nothing was worth keeping.
    pub moved_to: Option<PathBuf>,
}

impl fmt::Display for SpoolCorruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes at offset {} of {} ({})",
            self.bytes,
            self.offset,
            self.file.display(),
            self.kind
        )?;
        if let Some(moved_to) = &self.moved_to {
            write!(f, ", moved to {}", moved_to.display())?;
        }
        Ok(())
    }
}

/// An opened spool and what was wrong with it.
#[derive(Debug)]
pub struct OpenedSpool {
    pub spool: Spool,
    /// Bad bytes found and moved aside while opening; the good records are kept.
    pub corruption: Vec<SpoolCorruption>,
}

/// A place in the spool: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    segment: u64,
    offset: u64,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    number: u64,
    /// Bytes in the file, header included.
    len: u64,
}

/// One record returned by the last peek.
#[derive(Debug, Clone, Copy)]
struct PeekedRecord {
    at_unix_ms: u64,
    /// Where the record after it starts.
    end: Position,
}

/// The reader of the segment being replayed, kept between peeks.
#[derive(Debug)]
struct SegmentReader {
    position: Position,
    reader: BufReader<File>,
}

/// A bounded, append-only, checksummed log of play events on disk. See the
/// module's documentation for the layout and what survives a crash.
///
/// Events come back oldest first: [`peek`](Self::peek) reads a batch without
/// removing it, and [`commit`](Self::commit) removes it once the store has
/// taken it.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    options: SpoolOptions,
    /// Held open for its lock while the spool is open.
    _lock: File,
    /// Segments with events waiting, oldest first; the last one takes appends.
    segments: VecDeque<Segment>,
    /// The next record to replay, in the first segment.
    read: Position,
    /// The last segment, open for appends.
    writer: Option<File>,
    /// The last append failed and may have left bytes past the last record.
    tail_dirty: bool,
    reader: Option<SegmentReader>,
    peeked: Vec<PeekedRecord>,
    events: u64,
    bytes: u64,
    oldest_unix_ms: Option<u64>,
    next_segment: u64,
    /// Bad bytes found after opening, while reading.
    found: Vec<SpoolCorruption>,
    /// Reused for encoding appends and reading records.
    buffer: Vec<u8>,
}

impl Spool {
    /// Opens the spool in `dir`, creating the directory where needed, and takes
    /// its lock.
    ///
    /// Every record is checked. Bad bytes are moved aside to a `.corrupt` file
    /// next to their segment and reported in [`OpenedSpool::corruption`]:
    /// - a torn or garbage tail (the file ends inside a record, or a record's
    ///   length is impossible) is cut off, keeping every record before it;
    /// - a record whose length is plausible and after which a good record
    ///   follows is removed alone (the segment is rewritten without it);
    /// - a file that is not a segment is moved aside whole; an empty segment, or
    ///   one cut inside its header, holds nothing and is deleted.
    ///
    /// Fails with [`SpoolError::Locked`] when another process has the spool
    /// open, and with [`SpoolError::Io`] when the directory cannot be read or
    /// repaired.
    pub fn open(dir: impl AsRef<Path>, options: SpoolOptions) -> Result<OpenedSpool, SpoolError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(SpoolError::io("create the spool directory", &dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(SpoolError::io("create the lock file", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(SpoolError::Locked { path: dir }),
            Err(TryLockError::Error(source)) => {
                return Err(SpoolError::Io {
                    operation: "lock",
                    path: lock_path,
                    source,
                });
            }
        }
        let mut spool = Self {
            dir,
            options: SpoolOptions {
                segment_bytes: options.segment_bytes.max(MIN_SEGMENT_BYTES),
                ..options
            },
            _lock: lock,
            segments: VecDeque::new(),
            read: Position {
                segment: 0,
                offset: SEGMENT_HEADER,
            },
            writer: None,
            tail_dirty: false,
            reader: None,
            peeked: Vec::new(),
            events: 0,
            bytes: 0,
            oldest_unix_ms: None,
            next_segment: 1,
            found: Vec::new(),
            buffer: Vec::new(),
        };
        let corruption = spool.recover()?;
        Ok(OpenedSpool { spool, corruption })
    }

    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> SpoolOptions {
        self.options
    }

    /// Events waiting to be replayed.
    pub fn len_events(&self) -> u64 {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Bytes the segment files take on disk, the part already replayed of the
    /// oldest segment included; what [`SpoolOptions::max_bytes`] bounds.
    pub fn size_bytes(&self) -> u64 {
        self.bytes
    }

    /// The time of the oldest event waiting, `None` when the spool is empty.
    pub fn oldest_unix_ms(&self) -> Option<u64> {
        self.oldest_unix_ms
    }

    /// Bad bytes found since the spool was opened (while reading records that
    /// had been good when written), moved aside and not reported yet.
    pub fn take_corruption(&mut self) -> Vec<SpoolCorruption> {
        std::mem::take(&mut self.found)
    }

    /// Appends `events` after every event in the spool, in their order, and
    /// syncs them to disk before returning. The whole batch is appended or
    /// none of it: an append that would take the spool past
    /// [`SpoolOptions::max_bytes`] fails with [`SpoolError::Full`] and changes
    /// nothing.
    pub fn append(&mut self, events: &[PlayEvent]) -> Result<(), SpoolError> {
        if events.is_empty() {
            return Ok(());
        }
        self.buffer.clear();
        for event in events {
            encode_record(event, &mut self.buffer)?;
        }
        let records = self.buffer.len() as u64;
        let start_segment = match self.segments.back() {
            None => true,
            Some(last) => {
                last.len > SEGMENT_HEADER && last.len + records > self.options.segment_bytes
            }
        } || self.writer.is_none();
        let needed_bytes = records + if start_segment { SEGMENT_HEADER } else { 0 };
        if self.bytes + needed_bytes > self.options.max_bytes {
            return Err(SpoolError::Full {
                path: self.dir.clone(),
                needed_bytes,
                size_bytes: self.bytes,
                max_bytes: self.options.max_bytes,
            });
        }
        if start_segment {
            self.start_segment()?;
        }
        // Appending invalidates what a reader may have buffered past the end.
        self.reader = None;
        let (Some(last), Some(writer)) = (self.segments.back().copied(), self.writer.as_mut())
        else {
            return Err(SpoolError::Io {
                operation: "append to",
                path: self.dir.clone(),
                source: io::Error::other("no segment is open for appends"),
            });
        };
        let (number, at) = (last.number, last.len);
        let path = self.dir.join(segment_file_name(number));
        let written = (|| {
            if self.tail_dirty {
                writer.set_len(at)?;
            }
            writer.seek(SeekFrom::Start(at))?;
            writer.write_all(&self.buffer)?;
            writer.sync_data()
        })();
        if let Err(source) = written {
            // Cut what was written; if that fails too, the next append cuts it.
            self.tail_dirty = writer.set_len(at).is_err();
            return Err(SpoolError::Io {
                operation: "append to",
                path,
                source,
            });
        }
        self.tail_dirty = false;
        if let Some(last) = self.segments.back_mut() {
            last.len += records;
        }
        self.bytes += records;
        if self.events == 0 {
            self.read = Position {
                segment: number,
                offset: at,
            };
            self.oldest_unix_ms = Some(events[0].at_unix_ms);
        }
        self.events += events.len() as u64;
        Ok(())
    }

    /// The oldest `max` events waiting (fewer when fewer wait), oldest first,
    /// without removing them; [`commit`](Self::commit) removes them.
    ///
    /// A record found bad here (it was good when appended or opened: the disk
    /// changed under the spool) is moved aside like at opening, reported
    /// through [`take_corruption`](Self::take_corruption), and reading goes on
    /// past it.
    pub fn peek(&mut self, max: usize) -> Result<Vec<PlayEvent>, SpoolError> {
        self.peeked.clear();
        let wanted = max.min(usize::try_from(self.events).unwrap_or(usize::MAX));
        let mut events = Vec::with_capacity(wanted);
        match self.read_records(wanted, &mut events) {
            Ok(()) => {}
            Err(ReadFailure::Io(error)) => return Err(error),
            Err(ReadFailure::Bad { .. }) => {
                let corruption = self.recover()?;
                self.found.extend(corruption);
                events.clear();
                self.peeked.clear();
                let wanted = max.min(usize::try_from(self.events).unwrap_or(usize::MAX));
                match self.read_records(wanted, &mut events) {
                    Ok(()) => {}
                    Err(ReadFailure::Io(error)) => return Err(error),
                    Err(ReadFailure::Bad { path, offset, kind }) => {
                        self.peeked.clear();
                        return Err(SpoolError::Unreadable { path, offset, kind });
                    }
                }
            }
        }
        if let Some(first) = events.first() {
            self.oldest_unix_ms = Some(first.at_unix_ms);
        }
        Ok(events)
    }

    /// Removes the first `count` events of the last [`peek`](Self::peek), once
    /// the store has taken them. Fully replayed segments are deleted; an empty
    /// spool deletes all its segments.
    ///
    /// [`SpoolError::CommitNotRecorded`] means the commit took effect here but
    /// could not be recorded on disk, so a restart would replay those events.
    pub fn commit(&mut self, count: usize) -> Result<(), SpoolError> {
        if count == 0 {
            return Ok(());
        }
        if count > self.peeked.len() {
            return Err(SpoolError::CommitBeyondPeek {
                requested: count,
                peeked: self.peeked.len(),
            });
        }
        let last = self.peeked[count - 1];
        self.peeked.drain(..count);
        self.events -= count as u64;
        self.read = last.end;
        if self.events == 0 {
            return self.clear();
        }
        let mut removal = Ok(());
        while let Some(first) = self.segments.front().copied() {
            let replayed = first.number < self.read.segment
                || (first.number == self.read.segment
                    && self.read.offset >= first.len
                    && self.segments.len() > 1);
            if !replayed {
                break;
            }
            self.segments.pop_front();
            self.bytes -= first.len;
            if let Some(next) = self.segments.front()
                && self.read.segment == first.number
            {
                self.read = Position {
                    segment: next.number,
                    offset: SEGMENT_HEADER,
                };
            }
            let path = self.segment_path(first.number);
            if let Err(source) = fs::remove_file(&path)
                && removal.is_ok()
            {
                removal = Err(SpoolError::CommitNotRecorded {
                    operation: "remove the replayed segment",
                    path,
                    source,
                });
            }
        }
        self.oldest_unix_ms = Some(match self.peeked.first() {
            Some(next) => next.at_unix_ms,
            None => self.read_next_time().unwrap_or(last.at_unix_ms),
        });
        let cursor = self.store_cursor(false).map_err(FileError::not_recorded);
        removal?;
        cursor
    }

    /// Syncs the spool's files, its position included, to disk (at shutdown).
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if let (Some(writer), Some(last)) = (&self.writer, self.segments.back()) {
            writer
                .sync_all()
                .map_err(SpoolError::io("sync", &self.segment_path(last.number)))?;
        }
        if self.events > 0 {
            self.store_cursor(true).map_err(FileError::io)?;
        }
        Ok(())
    }

    fn segment_path(&self, number: u64) -> PathBuf {
        self.dir.join(segment_file_name(number))
    }

    fn corrupt_path(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{number:020}.{CORRUPT_EXTENSION}"))
    }

    fn start_segment(&mut self) -> Result<(), SpoolError> {
        let number = self.next_segment;
        let path = self.segment_path(number);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(SpoolError::io("create the segment", &path))?;
        if let Err(source) = file.write_all(SEGMENT_MAGIC) {
            let _ = fs::remove_file(&path);
            return Err(SpoolError::Io {
                operation: "write the header of",
                path,
                source,
            });
        }
        // The new file's name must survive a crash as its records do.
        sync_directory(&self.dir).map_err(SpoolError::io("sync the directory", &self.dir))?;
        self.next_segment += 1;
        if self.events == 0 {
            self.read = Position {
                segment: number,
                offset: SEGMENT_HEADER,
            };
        }
        self.segments.push_back(Segment {
            number,
            len: SEGMENT_HEADER,
        });
        self.bytes += SEGMENT_HEADER;
        self.writer = Some(file);
        self.tail_dirty = false;
        Ok(())
    }

    /// Deletes every segment and the cursor: the spool is empty.
    fn clear(&mut self) -> Result<(), SpoolError> {
        self.writer = None;
        self.reader = None;
        self.peeked.clear();
        self.oldest_unix_ms = None;
        self.bytes = 0;
        self.read = Position {
            segment: self.next_segment,
            offset: SEGMENT_HEADER,
        };
        let mut result = Ok(());
        // The cursor already points past every record: removing segments first
        // keeps a crash in between from replaying anything.
        if let Some(last) = self.segments.back() {
            let end = Position {
                segment: last.number,
                offset: last.len,
            };
            self.read = end;
            if let Err(error) = self.store_cursor(false) {
                result = Err(error.not_recorded());
            }
        }
        for segment in std::mem::take(&mut self.segments) {
            let path = self.segment_path(segment.number);
            if let Err(source) = fs::remove_file(&path)
                && result.is_ok()
            {
                result = Err(SpoolError::CommitNotRecorded {
                    operation: "remove the replayed segment",
                    path,
                    source,
                });
            }
        }
        self.read = Position {
            segment: self.next_segment,
            offset: SEGMENT_HEADER,
        };
        let cursor = self.dir.join(CURSOR_FILE);
        match fs::remove_file(&cursor) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                if result.is_ok() {
                    result = Err(SpoolError::CommitNotRecorded {
                        operation: "remove",
                        path: cursor,
                        source,
                    });
                }
            }
        }
        result
    }

    /// Writes the read position to the cursor file (through a temporary file
    /// and a rename, so that the file is always whole); syncs it when `durable`.
    fn store_cursor(&self, durable: bool) -> Result<(), FileError> {
        let mut bytes = Vec::with_capacity(28);
        bytes.extend_from_slice(CURSOR_MAGIC);
        bytes.extend_from_slice(&self.read.segment.to_le_bytes());
        bytes.extend_from_slice(&self.read.offset.to_le_bytes());
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let temp = self.dir.join(CURSOR_TEMP_FILE);
        let path = self.dir.join(CURSOR_FILE);
        let mut file = File::create(&temp).map_err(FileError::at("create", &temp))?;
        file.write_all(&bytes)
            .map_err(FileError::at("write", &temp))?;
        if durable {
            file.sync_all().map_err(FileError::at("sync", &temp))?;
        }
        fs::rename(&temp, &path).map_err(FileError::at("replace", &path))?;
        if durable {
            sync_directory(&self.dir).map_err(FileError::at("sync", &self.dir))?;
        }
        Ok(())
    }

    /// Reads the cursor file: `Ok(None)` when there is none, `Err` with a
    /// report when it is unreadable (it is then moved aside).
    fn load_cursor(&self) -> Result<Option<Position>, SpoolError> {
        let path = self.dir.join(CURSOR_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(SpoolError::Io {
                    operation: "read",
                    path,
                    source,
                });
            }
        };
        let position = (bytes.len() == 28 && bytes[..8] == CURSOR_MAGIC[..])
            .then(|| {
                let crc = u32::from_le_bytes(bytes[24..28].try_into().ok()?);
                (crc32fast::hash(&bytes[..24]) == crc).then_some(())?;
                Some(Position {
                    segment: u64::from_le_bytes(bytes[8..16].try_into().ok()?),
                    offset: u64::from_le_bytes(bytes[16..24].try_into().ok()?),
                })
            })
            .flatten();
        Ok(position)
    }

    /// Scans the directory and rebuilds the spool's state from it, moving bad
    /// bytes aside; returns what was moved.
    fn recover(&mut self) -> Result<Vec<SpoolCorruption>, SpoolError> {
        self.writer = None;
        self.reader = None;
        self.peeked.clear();
        self.segments.clear();
        self.events = 0;
        self.bytes = 0;
        self.oldest_unix_ms = None;
        let mut corruption = Vec::new();

        let mut numbers = BTreeSet::new();
        let entries = fs::read_dir(&self.dir).map_err(SpoolError::io("list", &self.dir))?;
        for entry in entries {
            let entry = entry.map_err(SpoolError::io("list", &self.dir))?;
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
                continue;
            };
            if name == CURSOR_TEMP_FILE || name.ends_with(&format!(".{REWRITE_EXTENSION}")) {
                // Left by a crash in the middle of replacing a file: the file it
                // was to replace is still whole.
                fs::remove_file(&path).map_err(SpoolError::io("remove", &path))?;
                continue;
            }
            if let Some(number) = name
                .strip_suffix(&format!(".{SEGMENT_EXTENSION}"))
                .filter(|digits| digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|digits| digits.parse::<u64>().ok())
            {
                numbers.insert(number);
            }
        }
        self.next_segment = self
            .next_segment
            .max(numbers.last().map_or(1, |last| last + 1));

        let cursor_path = self.dir.join(CURSOR_FILE);
        let stored_cursor = self.load_cursor()?;
        let cursor = match stored_cursor {
            Some(position) => Some(position),
            None if cursor_path.exists() => {
                let bytes = fs::metadata(&cursor_path).map_or(0, |meta| meta.len());
                let moved_to = self.dir.join(CURSOR_CORRUPT_FILE);
                fs::rename(&cursor_path, &moved_to)
                    .map_err(SpoolError::io("move aside", &cursor_path))?;
                corruption.push(SpoolCorruption {
                    file: cursor_path.clone(),
                    offset: 0,
                    bytes,
                    kind: CorruptionKind::BadCursor,
                    moved_to: Some(moved_to),
                });
                None
            }
            None => None,
        };
        if let Some(cursor) = cursor {
            self.next_segment = self.next_segment.max(cursor.segment + 1);
        }

        let mut start: Option<Position> = None;
        for number in numbers {
            let path = self.segment_path(number);
            if cursor.is_some_and(|cursor| number < cursor.segment) {
                // Replayed before a crash kept it from being deleted.
                fs::remove_file(&path).map_err(SpoolError::io("remove", &path))?;
                continue;
            }
            let data = fs::read(&path).map_err(SpoolError::io("read", &path))?;
            let scan = match scan_segment(&data) {
                SegmentScan::NoHeader => {
                    fs::remove_file(&path).map_err(SpoolError::io("remove", &path))?;
                    continue;
                }
                SegmentScan::BadHeader => {
                    let moved_to = self.corrupt_path(number);
                    self.move_aside(&moved_to, &[&data])?;
                    fs::remove_file(&path).map_err(SpoolError::io("remove", &path))?;
                    corruption.push(SpoolCorruption {
                        file: path,
                        offset: 0,
                        bytes: data.len() as u64,
                        kind: CorruptionKind::BadSegmentHeader,
                        moved_to: Some(moved_to),
                    });
                    continue;
                }
                SegmentScan::Records(scan) => scan,
            };
            // Where replay starts in this segment, as an index into its good records.
            let mut first_unread = 0;
            if let Some(cursor) = cursor.filter(|cursor| cursor.segment == number) {
                let on_boundary = cursor.offset == data.len() as u64
                    || scan.records.iter().any(|r| r.offset == cursor.offset)
                    || scan.bad.iter().any(|b| b.offset == cursor.offset);
                if on_boundary {
                    first_unread = scan
                        .records
                        .iter()
                        .position(|r| r.offset >= cursor.offset)
                        .unwrap_or(scan.records.len());
                } else {
                    corruption.push(SpoolCorruption {
                        file: cursor_path.clone(),
                        offset: cursor.offset,
                        bytes: 0,
                        kind: CorruptionKind::BadCursor,
                        moved_to: None,
                    });
                }
            }
            let (records, len) = if scan.bad.is_empty() {
                (scan.records, data.len() as u64)
            } else {
                self.repair(number, &data, scan, &mut corruption)?
            };
            let unread = &records[first_unread..];
            let Some(first) = unread.first() else {
                // Nothing left to replay here.
                fs::remove_file(&path).map_err(SpoolError::io("remove", &path))?;
                continue;
            };
            if start.is_none() {
                start = Some(Position {
                    segment: number,
                    offset: first.offset,
                });
                self.oldest_unix_ms = Some(first.at_unix_ms);
            }
            self.events += unread.len() as u64;
            self.bytes += len;
            self.segments.push_back(Segment { number, len });
        }

        match start {
            None => {
                self.read = Position {
                    segment: self.next_segment,
                    offset: SEGMENT_HEADER,
                };
                match fs::remove_file(&cursor_path) {
                    Ok(()) => {}
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(SpoolError::Io {
                            operation: "remove",
                            path: cursor_path,
                            source,
                        });
                    }
                }
            }
            Some(start) => {
                self.read = start;
                if stored_cursor != Some(start) {
                    self.store_cursor(true).map_err(FileError::io)?;
                }
                if let Some(last) = self.segments.back() {
                    let path = self.segment_path(last.number);
                    let writer = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(SpoolError::io("open", &path))?;
                    self.writer = Some(writer);
                }
            }
        }
        sync_directory(&self.dir).map_err(SpoolError::io("sync the directory", &self.dir))?;
        Ok(corruption)
    }

    /// Moves the bad regions of segment `number` aside and rewrites or cuts the
    /// segment so that only good records remain; returns them with their new
    /// offsets, and the segment's new length.
    fn repair(
        &self,
        number: u64,
        data: &[u8],
        scan: ScannedSegment,
        corruption: &mut Vec<SpoolCorruption>,
    ) -> Result<(Vec<ScannedRecord>, u64), SpoolError> {
        let path = self.segment_path(number);
        let moved_to = self.corrupt_path(number);
        let bad_bytes: Vec<&[u8]> = scan
            .bad
            .iter()
            .map(|bad| &data[to_index(bad.offset)..to_index(bad.end)])
            .collect();
        self.move_aside(&moved_to, &bad_bytes)?;
        for bad in &scan.bad {
            corruption.push(SpoolCorruption {
                file: path.clone(),
                offset: bad.offset,
                bytes: bad.end - bad.offset,
                kind: bad.kind,
                moved_to: Some(moved_to.clone()),
            });
        }
        let only_a_tail = scan.bad.len() == 1 && scan.bad[0].end == data.len() as u64;
        if only_a_tail {
            let len = scan.bad[0].offset;
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(SpoolError::io("open", &path))?;
            file.set_len(len)
                .and_then(|()| file.sync_all())
                .map_err(SpoolError::io("cut the bad tail of", &path))?;
            return Ok((scan.records, len));
        }
        let mut kept = Vec::with_capacity(data.len());
        kept.extend_from_slice(SEGMENT_MAGIC);
        let mut records = Vec::with_capacity(scan.records.len());
        for record in &scan.records {
            let offset = kept.len() as u64;
            kept.extend_from_slice(&data[to_index(record.offset)..to_index(record.end)]);
            records.push(ScannedRecord {
                offset,
                end: kept.len() as u64,
                at_unix_ms: record.at_unix_ms,
            });
        }
        let temp = self.dir.join(format!("{number:020}.{REWRITE_EXTENSION}"));
        let mut file = File::create(&temp).map_err(SpoolError::io("create", &temp))?;
        file.write_all(&kept)
            .and_then(|()| file.sync_all())
            .map_err(SpoolError::io("write", &temp))?;
        fs::rename(&temp, &path).map_err(SpoolError::io("replace", &path))?;
        Ok((records, kept.len() as u64))
    }

    /// Appends `parts` to the `.corrupt` file `path` and syncs it.
    fn move_aside(&self, path: &Path, parts: &[&[u8]]) -> Result<(), SpoolError> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(SpoolError::io("create", path))?;
        for part in parts {
            file.write_all(part)
                .map_err(SpoolError::io("write", path))?;
        }
        file.sync_all().map_err(SpoolError::io("sync", path))
    }

    /// Reads `wanted` records from the read position into `events` and
    /// `self.peeked`.
    fn read_records(
        &mut self,
        wanted: usize,
        events: &mut Vec<PlayEvent>,
    ) -> Result<(), ReadFailure> {
        let mut position = self.read;
        let mut index = match self
            .segments
            .iter()
            .position(|segment| segment.number == position.segment)
        {
            Some(index) => index,
            None => {
                let Some(first) = self.segments.front() else {
                    return Ok(());
                };
                position = Position {
                    segment: first.number,
                    offset: SEGMENT_HEADER,
                };
                0
            }
        };
        while events.len() < wanted {
            let Some(segment) = self.segments.get(index).copied() else {
                break;
            };
            if position.offset >= segment.len {
                index += 1;
                match self.segments.get(index) {
                    Some(next) => {
                        position = Position {
                            segment: next.number,
                            offset: SEGMENT_HEADER,
                        };
                        continue;
                    }
                    None => break,
                }
            }
            let path = self.segment_path(segment.number);
            let io_failure = |source| {
                ReadFailure::Io(SpoolError::Io {
                    operation: "read",
                    path: path.clone(),
                    source,
                })
            };
            let reader = reader_at(&mut self.reader, position, &path).map_err(io_failure)?;
            let (event, record_len) = read_record(
                &mut reader.reader,
                segment.len - position.offset,
                &mut self.buffer,
            )
            .map_err(|failure| match failure {
                RecordFailure::Io(source) => io_failure(source),
                RecordFailure::Bad(kind) => ReadFailure::Bad {
                    path: path.clone(),
                    offset: position.offset,
                    kind,
                },
            })?;
            position.offset += record_len;
            reader.position = position;
            self.peeked.push(PeekedRecord {
                at_unix_ms: event.at_unix_ms,
                end: position,
            });
            events.push(event);
        }
        Ok(())
    }

    /// The time of the record at the read position, read without changing
    /// anything; `None` when it cannot be read (the next peek will tell).
    fn read_next_time(&mut self) -> Option<u64> {
        let position = self.read;
        let segment = self
            .segments
            .iter()
            .find(|segment| segment.number == position.segment)
            .copied()?;
        let path = self.segment_path(segment.number);
        let reader = reader_at(&mut self.reader, position, &path).ok()?;
        let available = segment.len.checked_sub(position.offset)?;
        let (event, len) = read_record(&mut reader.reader, available, &mut self.buffer).ok()?;
        reader.position.offset += len;
        Some(event.at_unix_ms)
    }
}

/// The reader kept in `slot` if it stands at `position`, else a new one
/// opened on `path` and placed there.
fn reader_at<'a>(
    slot: &'a mut Option<SegmentReader>,
    position: Position,
    path: &Path,
) -> io::Result<&'a mut SegmentReader> {
    let reader = match slot.take() {
        Some(reader) if reader.position == position => reader,
        _ => {
            let mut file = File::open(path)?;
            file.seek(SeekFrom::Start(position.offset))?;
            SegmentReader {
                position,
                reader: BufReader::with_capacity(READ_BUFFER_BYTES, file),
            }
        }
    };
    Ok(slot.insert(reader))
}

/// A failed operation on one file, before it is known whether it failed an
/// operation or only its record keeping.
#[derive(Debug)]
struct FileError {
    operation: &'static str,
    path: PathBuf,
    source: io::Error,
}

impl FileError {
    fn at<'a>(operation: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Self + 'a {
        move |source| Self {
            operation,
            path: path.to_path_buf(),
            source,
        }
    }

    fn io(self) -> SpoolError {
        SpoolError::Io {
            operation: self.operation,
            path: self.path,
            source: self.source,
        }
    }

    fn not_recorded(self) -> SpoolError {
        SpoolError::CommitNotRecorded {
            operation: self.operation,
            path: self.path,
            source: self.source,
        }
    }
}

/// Why reading records stopped.
#[derive(Debug)]
enum ReadFailure {
    Io(SpoolError),
    Bad {
        path: PathBuf,
        offset: u64,
        kind: CorruptionKind,
    },
}

#[derive(Debug)]
enum RecordFailure {
    Io(io::Error),
    Bad(CorruptionKind),
}

/// Reads one record of at most `available` bytes; returns the event and the
/// record's length.
fn read_record(
    reader: &mut impl Read,
    available: u64,
    buffer: &mut Vec<u8>,
) -> Result<(PlayEvent, u64), RecordFailure> {
    if available < RECORD_HEADER as u64 {
        return Err(RecordFailure::Bad(CorruptionKind::TornTail));
    }
    let mut header = [0; RECORD_HEADER];
    reader.read_exact(&mut header).map_err(RecordFailure::Io)?;
    let len = record_len(&header).map_err(RecordFailure::Bad)?;
    let record_len = (RECORD_HEADER + len) as u64;
    if record_len > available {
        return Err(RecordFailure::Bad(CorruptionKind::TornTail));
    }
    buffer.resize(len, 0);
    reader.read_exact(buffer).map_err(RecordFailure::Io)?;
    let event = check_record(&header, buffer).map_err(RecordFailure::Bad)?;
    Ok((event, record_len))
}

/// The payload length a record header announces, if it is possible.
fn record_len(header: &[u8; RECORD_HEADER]) -> Result<usize, CorruptionKind> {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len == 0 || len > MAX_RECORD_BYTES {
        return Err(CorruptionKind::BadLength);
    }
    Ok(len)
}

/// Checks a record's checksum and decodes its event.
fn check_record(header: &[u8; RECORD_HEADER], payload: &[u8]) -> Result<PlayEvent, CorruptionKind> {
    let stored = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if record_crc(&header[..4], payload) != stored {
        return Err(CorruptionKind::Checksum);
    }
    serde_json::from_slice(payload).map_err(|_| CorruptionKind::Undecodable)
}

/// CRC-32 of a record's length field and payload.
fn record_crc(len: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(len);
    hasher.update(payload);
    hasher.finalize()
}

/// Appends `event` as a record to `buffer`.
fn encode_record(event: &PlayEvent, buffer: &mut Vec<u8>) -> Result<(), SpoolError> {
    let start = buffer.len();
    buffer.extend_from_slice(&[0; RECORD_HEADER]);
    let encoded = serde_json::to_writer(&mut *buffer, event);
    if let Err(source) = encoded {
        buffer.truncate(start);
        return Err(SpoolError::Encode {
            id: event.id,
            source,
        });
    }
    let len = buffer.len() - start - RECORD_HEADER;
    if len > MAX_RECORD_BYTES {
        buffer.truncate(start);
        return Err(SpoolError::RecordTooLarge {
            id: event.id,
            bytes: len,
            max: MAX_RECORD_BYTES,
        });
    }
    let len_bytes = (len as u32).to_le_bytes();
    let crc = record_crc(&len_bytes, &buffer[start + RECORD_HEADER..]);
    buffer[start..start + 4].copy_from_slice(&len_bytes);
    buffer[start + 4..start + RECORD_HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

#[derive(Debug, Clone, Copy)]
struct ScannedRecord {
    offset: u64,
    end: u64,
    at_unix_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct BadRegion {
    offset: u64,
    end: u64,
    kind: CorruptionKind,
}

#[derive(Debug)]
struct ScannedSegment {
    records: Vec<ScannedRecord>,
    bad: Vec<BadRegion>,
}

#[derive(Debug)]
enum SegmentScan {
    /// Empty, or cut inside the header: the segment holds nothing.
    NoHeader,
    /// Not a spool segment.
    BadHeader,
    Records(ScannedSegment),
}

/// Splits a segment's bytes into good records and bad regions.
fn scan_segment(data: &[u8]) -> SegmentScan {
    if data.len() < SEGMENT_MAGIC.len() {
        return if SEGMENT_MAGIC.starts_with(data) {
            SegmentScan::NoHeader
        } else {
            SegmentScan::BadHeader
        };
    }
    if data[..SEGMENT_MAGIC.len()] != SEGMENT_MAGIC[..] {
        return SegmentScan::BadHeader;
    }
    let mut scan = ScannedSegment {
        records: Vec::new(),
        bad: Vec::new(),
    };
    let mut offset = SEGMENT_MAGIC.len();
    while offset < data.len() {
        match parse_record(data, offset) {
            Ok((event, end)) => {
                scan.records.push(ScannedRecord {
                    offset: offset as u64,
                    end: end as u64,
                    at_unix_ms: event.at_unix_ms,
                });
                offset = end;
            }
            Err((kind, next)) => {
                // A bad record with a good one right after it is cut out alone;
                // otherwise nothing after it can be trusted.
                let end = next
                    .filter(|&next| next < data.len() && parse_record(data, next).is_ok())
                    .unwrap_or(data.len());
                scan.bad.push(BadRegion {
                    offset: offset as u64,
                    end: end as u64,
                    kind,
                });
                offset = end;
            }
        }
    }
    SegmentScan::Records(scan)
}

/// Parses the record at `offset`: its event and where the next record starts,
/// or what is wrong with it and where it claims to end.
fn parse_record(
    data: &[u8],
    offset: usize,
) -> Result<(PlayEvent, usize), (CorruptionKind, Option<usize>)> {
    let Some(header) = data
        .get(offset..offset + RECORD_HEADER)
        .and_then(|header| <&[u8; RECORD_HEADER]>::try_from(header).ok())
    else {
        return Err((CorruptionKind::TornTail, None));
    };
    let len = record_len(header).map_err(|kind| (kind, None))?;
    let end = offset + RECORD_HEADER + len;
    let Some(payload) = data.get(offset + RECORD_HEADER..end) else {
        return Err((CorruptionKind::TornTail, None));
    };
    check_record(header, payload)
        .map(|event| (event, end))
        .map_err(|kind| (kind, Some(end)))
}

fn to_index(offset: u64) -> usize {
    usize::try_from(offset).unwrap_or(usize::MAX)
}

/// Makes a directory's entries (files created, renamed or removed) durable.
fn sync_directory(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn segment_file_name(number: u64) -> String {
    format!("{number:020}.{SEGMENT_EXTENSION}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::model::EventKind;
    use crate::events::model::tests::one_of_each_kind;

    fn open(dir: &Path) -> Spool {
        let opened = Spool::open(dir, SpoolOptions::default()).unwrap();
        assert_eq!(opened.corruption, Vec::new());
        opened.spool
    }

    fn events(count: usize) -> Vec<PlayEvent> {
        (0..count)
            .map(|i| {
                PlayEvent::new(
                    "main",
                    EventKind::Skip {
                        track_id: format!("track-{i}"),
                    },
                )
            })
            .collect()
    }

    /// Appends `appended` to a spool in `dir`, closes it, and gives its one segment file.
    fn spooled(dir: &Path, appended: &[PlayEvent]) -> PathBuf {
        open(dir).append(appended).unwrap();
        segment_files(dir).remove(0)
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == SEGMENT_EXTENSION))
            .collect();
        files.sort();
        files
    }

    /// Everything waiting, oldest first, without committing.
    fn all(spool: &mut Spool) -> Vec<PlayEvent> {
        spool.peek(usize::MAX).unwrap()
    }

    /// Offsets at which each record of a segment file starts, and its end.
    fn record_offsets(path: &Path) -> Vec<u64> {
        let data = fs::read(path).unwrap();
        let SegmentScan::Records(scan) = scan_segment(&data) else {
            panic!("{} is not a segment", path.display());
        };
        assert!(scan.bad.is_empty());
        let mut offsets: Vec<u64> = scan.records.iter().map(|r| r.offset).collect();
        offsets.push(data.len() as u64);
        offsets
    }

    #[test]
    fn appended_events_come_back_in_order_and_a_commit_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = open(dir.path());
        assert!(spool.is_empty());
        assert_eq!(spool.peek(10).unwrap(), Vec::new());
        let first = one_of_each_kind("main");
        let second = events(5);
        spool.append(&first).unwrap();
        spool.append(&second).unwrap();
        let expected: Vec<PlayEvent> = first.iter().chain(&second).cloned().collect();
        assert_eq!(spool.len_events(), expected.len() as u64);
        assert_eq!(spool.oldest_unix_ms(), Some(first[0].at_unix_ms));
        assert!(spool.size_bytes() > 0);

        assert_eq!(spool.peek(3).unwrap(), expected[..3]);
        // A peek reads without removing.
        assert_eq!(spool.peek(3).unwrap(), expected[..3]);
        spool.commit(2).unwrap();
        assert_eq!(spool.len_events(), expected.len() as u64 - 2);
        assert_eq!(spool.oldest_unix_ms(), Some(expected[2].at_unix_ms));
        assert_eq!(all(&mut spool), expected[2..]);
        spool.commit(expected.len() - 2).unwrap();
        assert!(spool.is_empty());
        assert_eq!(spool.size_bytes(), 0);
        assert_eq!(spool.oldest_unix_ms(), None);
        assert_eq!(segment_files(dir.path()), Vec::<PathBuf>::new());
        assert!(!dir.path().join(CURSOR_FILE).exists());

        // An emptied spool takes new events again.
        spool.append(&second).unwrap();
        assert_eq!(all(&mut spool), second);
    }

    #[test]
    fn a_commit_takes_only_what_was_peeked() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = open(dir.path());
        spool.append(&events(4)).unwrap();
        assert!(matches!(
            spool.commit(1),
            Err(SpoolError::CommitBeyondPeek {
                requested: 1,
                peeked: 0
            })
        ));
        spool.peek(2).unwrap();
        assert!(matches!(
            spool.commit(3),
            Err(SpoolError::CommitBeyondPeek {
                requested: 3,
                peeked: 2
            })
        ));
        assert_eq!(spool.len_events(), 4);
        spool.commit(0).unwrap();
        assert_eq!(spool.len_events(), 4);
    }

    #[test]
    fn appended_events_survive_a_crash_and_commits_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let appended = events(10);
        {
            let mut spool = open(dir.path());
            spool.append(&appended[..6]).unwrap();
            spool.append(&appended[6..]).unwrap();
            spool.peek(4).unwrap();
            spool.commit(4).unwrap();
            // Dropped without a sync: the process died.
        }
        let mut spool = open(dir.path());
        assert_eq!(spool.len_events(), 6);
        assert_eq!(spool.oldest_unix_ms(), Some(appended[4].at_unix_ms));
        assert_eq!(all(&mut spool), appended[4..]);

        // Peeked and not committed: still there after a reopen.
        drop(spool);
        let mut spool = open(dir.path());
        assert_eq!(all(&mut spool), appended[4..]);
        let more = events(3);
        spool.append(&more).unwrap();
        spool.sync().unwrap();
        drop(spool);
        let mut spool = open(dir.path());
        let expected: Vec<PlayEvent> = appended[4..].iter().chain(&more).cloned().collect();
        assert_eq!(all(&mut spool), expected);
    }

    #[test]
    fn replayed_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let options = SpoolOptions {
            max_bytes: 1 << 20,
            segment_bytes: MIN_SEGMENT_BYTES,
        };
        let mut spool = Spool::open(dir.path(), options).unwrap().spool;
        let appended = events(200);
        for chunk in appended.chunks(10) {
            spool.append(chunk).unwrap();
        }
        let segments = segment_files(dir.path());
        assert!(segments.len() >= 3, "{segments:?}");
        let on_disk: u64 = segments
            .iter()
            .map(|path| fs::metadata(path).unwrap().len())
            .sum();
        assert_eq!(spool.size_bytes(), on_disk);

        let mut replayed = Vec::new();
        while !spool.is_empty() {
            let batch = spool.peek(7).unwrap();
            spool.commit(batch.len()).unwrap();
            replayed.extend(batch);
            let left = segment_files(dir.path());
            assert!(left.len() <= segments.len());
            if !spool.is_empty() {
                // The segment being replayed and those after it stay.
                assert_eq!(left, segments[segments.len() - left.len()..]);
                let on_disk: u64 = left
                    .iter()
                    .map(|path| fs::metadata(path).unwrap().len())
                    .sum();
                assert_eq!(spool.size_bytes(), on_disk);
            }
        }
        assert_eq!(replayed, appended);
        assert_eq!(segment_files(dir.path()), Vec::<PathBuf>::new());
    }

    #[test]
    fn reopening_midway_through_several_segments_resumes_at_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let options = SpoolOptions {
            max_bytes: 1 << 20,
            segment_bytes: MIN_SEGMENT_BYTES,
        };
        let appended = events(120);
        {
            let mut spool = Spool::open(dir.path(), options).unwrap().spool;
            for chunk in appended.chunks(12) {
                spool.append(chunk).unwrap();
            }
            let batch = spool.peek(50).unwrap();
            spool.commit(batch.len()).unwrap();
        }
        let opened = Spool::open(dir.path(), options).unwrap();
        assert_eq!(opened.corruption, Vec::new());
        let mut spool = opened.spool;
        assert_eq!(spool.len_events(), 70);
        assert_eq!(all(&mut spool), appended[50..]);
    }

    #[test]
    fn appending_past_the_bound_fails_whole_and_replay_makes_room() {
        let dir = tempfile::tempdir().unwrap();
        let options = SpoolOptions {
            max_bytes: 16 * 1024,
            segment_bytes: MIN_SEGMENT_BYTES,
        };
        let mut spool = Spool::open(dir.path(), options).unwrap().spool;
        let mut appended = Vec::new();
        let error = loop {
            let batch = events(5);
            match spool.append(&batch) {
                Ok(()) => appended.extend(batch),
                Err(error) => break error,
            }
        };
        assert!(error.is_full(), "{error}");
        let SpoolError::Full {
            needed_bytes,
            size_bytes,
            max_bytes,
            ..
        } = error
        else {
            unreachable!()
        };
        assert_eq!(max_bytes, 16 * 1024);
        assert_eq!(size_bytes, spool.size_bytes());
        assert!(size_bytes + needed_bytes > max_bytes);
        assert!(spool.size_bytes() <= max_bytes);
        // Nothing of the refused batch was written.
        assert_eq!(spool.len_events(), appended.len() as u64);
        drop(spool);
        let mut spool = Spool::open(dir.path(), options).unwrap().spool;
        assert_eq!(all(&mut spool), appended);

        let batch = spool.peek(appended.len() / 2).unwrap();
        spool.commit(batch.len()).unwrap();
        spool.append(&events(5)).unwrap();
    }

    #[test]
    fn a_torn_last_record_is_cut_at_every_byte_offset() {
        let dir = tempfile::tempdir().unwrap();
        let appended = one_of_each_kind("main");
        let segment = spooled(dir.path(), &appended);
        let whole = fs::read(&segment).unwrap();
        let offsets = record_offsets(&segment);
        let last_start = offsets[offsets.len() - 2];
        let end = offsets[offsets.len() - 1];
        for cut in last_start + 1..end {
            fs::write(&segment, &whole[..to_index(cut)]).unwrap();
            let corrupt = dir.path().join(format!("{:020}.corrupt", 1));
            let _ = fs::remove_file(&corrupt);
            let opened = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
            assert_eq!(
                opened.corruption,
                vec![SpoolCorruption {
                    file: segment.clone(),
                    offset: last_start,
                    bytes: cut - last_start,
                    kind: CorruptionKind::TornTail,
                    moved_to: Some(corrupt.clone()),
                }],
                "cut at {cut}"
            );
            // The bad bytes are kept aside, the good records stay.
            assert_eq!(
                fs::read(&corrupt).unwrap(),
                whole[to_index(last_start)..to_index(cut)]
            );
            let mut spool = opened.spool;
            assert_eq!(
                all(&mut spool),
                appended[..appended.len() - 1],
                "cut at {cut}"
            );
            assert_eq!(fs::metadata(&segment).unwrap().len(), last_start);
            // Appends go on right after the last good record.
            let more = events(1);
            spool.append(&more).unwrap();
            drop(spool);
            let mut spool = open(dir.path());
            let mut expected = appended[..appended.len() - 1].to_vec();
            expected.extend(more);
            assert_eq!(all(&mut spool), expected, "cut at {cut}");
        }
    }

    #[test]
    fn a_cut_at_a_record_boundary_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let appended = events(4);
        let segment = spooled(dir.path(), &appended);
        let offsets = record_offsets(&segment);
        let whole = fs::read(&segment).unwrap();
        fs::write(&segment, &whole[..to_index(offsets[3])]).unwrap();
        let mut spool = open(dir.path());
        assert_eq!(all(&mut spool), appended[..3]);
    }

    #[test]
    fn a_flipped_bit_in_a_payload_removes_only_that_record() {
        let dir = tempfile::tempdir().unwrap();
        let appended = one_of_each_kind("main");
        let segment = spooled(dir.path(), &appended);
        let offsets = record_offsets(&segment);
        let mut data = fs::read(&segment).unwrap();
        let bad = 4;
        let flipped = to_index(offsets[bad]) + RECORD_HEADER + 5;
        data[flipped] ^= 0x10;
        fs::write(&segment, &data).unwrap();

        let opened = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
        let corrupt = dir.path().join(format!("{:020}.corrupt", 1));
        assert_eq!(
            opened.corruption,
            vec![SpoolCorruption {
                file: segment.clone(),
                offset: offsets[bad],
                bytes: offsets[bad + 1] - offsets[bad],
                kind: CorruptionKind::Checksum,
                moved_to: Some(corrupt.clone()),
            }]
        );
        assert_eq!(
            fs::read(&corrupt).unwrap(),
            data[to_index(offsets[bad])..to_index(offsets[bad + 1])]
        );
        let mut expected = appended.clone();
        expected.remove(bad);
        let mut spool = opened.spool;
        assert_eq!(all(&mut spool), expected);
        // The segment was rewritten without it: a reopen finds nothing wrong.
        drop(spool);
        let mut spool = open(dir.path());
        assert_eq!(all(&mut spool), expected);
    }

    #[test]
    fn a_bad_record_around_the_cursor_keeps_the_cursor_on_the_same_event() {
        let options = SpoolOptions {
            max_bytes: 1 << 20,
            segment_bytes: MIN_SEGMENT_BYTES,
        };
        let appended = events(100);
        // Bad records before, at and after where replay stands.
        for (committed, bad) in [(10, 3), (10, 10), (10, 12)] {
            let dir = tempfile::tempdir().unwrap();
            {
                let mut spool = Spool::open(dir.path(), options).unwrap().spool;
                for chunk in appended.chunks(10) {
                    spool.append(chunk).unwrap();
                }
                spool.peek(committed).unwrap();
                spool.commit(committed).unwrap();
            }
            let segments = segment_files(dir.path());
            assert!(segments.len() > 1);
            let offsets = record_offsets(&segments[0]);
            assert!(offsets.len() > bad + 2);
            let mut data = fs::read(&segments[0]).unwrap();
            data[to_index(offsets[bad]) + RECORD_HEADER + 1] ^= 0x02;
            fs::write(&segments[0], &data).unwrap();

            let opened = Spool::open(dir.path(), options).unwrap();
            assert_eq!(opened.corruption.len(), 1, "bad record {bad}");
            assert_eq!(opened.corruption[0].offset, offsets[bad]);
            let mut expected: Vec<PlayEvent> = appended[committed..].to_vec();
            if bad >= committed {
                expected.remove(bad - committed);
            }
            let mut spool = opened.spool;
            assert_eq!(
                spool.len_events(),
                expected.len() as u64,
                "bad record {bad}"
            );
            assert_eq!(all(&mut spool), expected, "bad record {bad}");
        }
    }

    #[test]
    fn a_flipped_bit_in_a_length_cuts_the_rest_of_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        let appended = events(6);
        let segment = spooled(dir.path(), &appended);
        let offsets = record_offsets(&segment);
        let mut data = fs::read(&segment).unwrap();
        // The length's highest byte: the record now claims to be far too long.
        data[to_index(offsets[2]) + 3] ^= 0x40;
        fs::write(&segment, &data).unwrap();
        let opened = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
        assert_eq!(opened.corruption.len(), 1);
        assert_eq!(opened.corruption[0].kind, CorruptionKind::BadLength);
        assert_eq!(opened.corruption[0].offset, offsets[2]);
        assert_eq!(opened.corruption[0].bytes, data.len() as u64 - offsets[2]);
        let mut spool = opened.spool;
        assert_eq!(all(&mut spool), appended[..2]);
    }

    #[test]
    fn a_bit_flipped_in_the_last_record_is_cut_like_a_tail() {
        let dir = tempfile::tempdir().unwrap();
        let appended = events(3);
        let segment = spooled(dir.path(), &appended);
        let mut data = fs::read(&segment).unwrap();
        let last = data.len() - 2;
        data[last] ^= 0x01;
        fs::write(&segment, &data).unwrap();
        let opened = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
        assert_eq!(opened.corruption.len(), 1);
        assert_eq!(opened.corruption[0].kind, CorruptionKind::Checksum);
        let mut spool = opened.spool;
        assert_eq!(all(&mut spool), appended[..2]);
    }

    #[test]
    fn empty_and_half_written_segment_files_hold_nothing() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(segment_file_name(1)), b"").unwrap();
        fs::write(dir.path().join(segment_file_name(2)), &SEGMENT_MAGIC[..5]).unwrap();
        fs::write(dir.path().join(segment_file_name(3)), SEGMENT_MAGIC).unwrap();
        let mut spool = open(dir.path());
        assert!(spool.is_empty());
        assert_eq!(segment_files(dir.path()), Vec::<PathBuf>::new());
        // New segments are numbered after the ones found.
        spool.append(&events(1)).unwrap();
        assert_eq!(
            segment_files(dir.path()),
            vec![dir.path().join(segment_file_name(4))]
        );
    }

    #[test]
    fn a_garbage_file_is_moved_aside_and_the_other_segments_kept() {
        let dir = tempfile::tempdir().unwrap();
        let appended = events(3);
        {
            let mut spool = open(dir.path());
            spool.append(&appended).unwrap();
        }
        let garbage: Vec<u8> = (0..3000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let garbage_path = dir.path().join(segment_file_name(7));
        fs::write(&garbage_path, &garbage).unwrap();
        let opened = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
        let moved_to = dir.path().join(format!("{:020}.corrupt", 7));
        assert_eq!(
            opened.corruption,
            vec![SpoolCorruption {
                file: garbage_path.clone(),
                offset: 0,
                bytes: garbage.len() as u64,
                kind: CorruptionKind::BadSegmentHeader,
                moved_to: Some(moved_to.clone()),
            }]
        );
        assert!(!garbage_path.exists());
        assert_eq!(fs::read(&moved_to).unwrap(), garbage);
        let mut spool = opened.spool;
        assert_eq!(all(&mut spool), appended);
    }

    #[test]
    fn garbage_after_the_last_record_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let appended = events(3);
        let segment = spooled(dir.path(), &appended);
        let good_len = fs::metadata(&segment).unwrap().len();
        let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
        file.write_all(&[0xff; 100]).unwrap();
        drop(file);
        let opened = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
        assert_eq!(opened.corruption.len(), 1);
        assert_eq!(opened.corruption[0].offset, good_len);
        assert_eq!(opened.corruption[0].bytes, 100);
        assert_eq!(opened.corruption[0].kind, CorruptionKind::BadLength);
        let mut spool = opened.spool;
        assert_eq!(all(&mut spool), appended);
    }

    #[test]
    fn zeros_after_the_last_record_are_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let appended = events(2);
        let segment = spooled(dir.path(), &appended);
        let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
        file.write_all(&[0; 4096]).unwrap();
        drop(file);
        let opened = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
        assert_eq!(opened.corruption.len(), 1);
        assert_eq!(opened.corruption[0].bytes, 4096);
        let mut spool = opened.spool;
        assert_eq!(all(&mut spool), appended);
    }

    #[test]
    fn a_corrupt_cursor_replays_from_the_oldest_record_kept() {
        let dir = tempfile::tempdir().unwrap();
        let appended = events(5);
        {
            let mut spool = open(dir.path());
            spool.append(&appended).unwrap();
            spool.peek(2).unwrap();
            spool.commit(2).unwrap();
        }
        let cursor = dir.path().join(CURSOR_FILE);
        let mut bytes = fs::read(&cursor).unwrap();
        bytes[12] ^= 0x01;
        fs::write(&cursor, &bytes).unwrap();
        let opened = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
        assert_eq!(opened.corruption.len(), 1);
        assert_eq!(opened.corruption[0].kind, CorruptionKind::BadCursor);
        assert_eq!(opened.corruption[0].file, cursor);
        let mut spool = opened.spool;
        // Replayed again from the start: the sinks ignore what they have.
        assert_eq!(all(&mut spool), appended);
    }

    #[test]
    fn a_cursor_inside_a_record_replays_its_whole_segment() {
        let dir = tempfile::tempdir().unwrap();
        let appended = events(5);
        let offsets;
        {
            let mut spool = open(dir.path());
            spool.append(&appended).unwrap();
            offsets = record_offsets(&segment_files(dir.path())[0]);
            spool.read = Position {
                segment: 1,
                offset: offsets[2] + 3,
            };
            spool.store_cursor(true).unwrap();
        }
        let opened = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
        assert_eq!(opened.corruption.len(), 1);
        assert_eq!(opened.corruption[0].kind, CorruptionKind::BadCursor);
        assert_eq!(opened.corruption[0].offset, offsets[2] + 3);
        let mut spool = opened.spool;
        assert_eq!(all(&mut spool), appended);
    }

    #[test]
    fn a_record_that_goes_bad_after_opening_is_moved_aside_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let appended = events(6);
        let mut spool = open(dir.path());
        spool.append(&appended).unwrap();
        let segment = segment_files(dir.path()).remove(0);
        let offsets = record_offsets(&segment);
        let mut data = fs::read(&segment).unwrap();
        data[to_index(offsets[1]) + RECORD_HEADER + 2] ^= 0x04;
        fs::write(&segment, &data).unwrap();

        let mut expected = appended.clone();
        expected.remove(1);
        assert_eq!(all(&mut spool), expected);
        let found = spool.take_corruption();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, CorruptionKind::Checksum);
        assert_eq!(found[0].offset, offsets[1]);
        assert_eq!(spool.len_events(), 5);
        assert_eq!(spool.take_corruption(), Vec::new());
        let batch = spool.peek(10).unwrap();
        spool.commit(batch.len()).unwrap();
        assert!(spool.is_empty());
    }

    #[test]
    fn a_spool_is_open_in_one_process_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let spool = open(dir.path());
        assert!(matches!(
            Spool::open(dir.path(), SpoolOptions::default()),
            Err(SpoolError::Locked { .. })
        ));
        drop(spool);
        open(dir.path());
    }

    #[test]
    fn files_left_by_an_interrupted_replacement_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let appended = events(2);
        {
            let mut spool = open(dir.path());
            spool.append(&appended).unwrap();
        }
        fs::write(dir.path().join(CURSOR_TEMP_FILE), b"half").unwrap();
        fs::write(dir.path().join(format!("{:020}.rewrite", 1)), b"half").unwrap();
        let mut spool = open(dir.path());
        assert_eq!(all(&mut spool), appended);
        assert!(!dir.path().join(CURSOR_TEMP_FILE).exists());
        assert!(!dir.path().join(format!("{:020}.rewrite", 1)).exists());
    }

    #[test]
    fn an_event_too_large_for_a_record_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = open(dir.path());
        let huge = PlayEvent::new(
            "main",
            EventKind::Skip {
                track_id: "x".repeat(MAX_RECORD_BYTES + 1),
            },
        );
        let error = spool.append(&[events(1).remove(0), huge]).unwrap_err();
        assert!(
            matches!(error, SpoolError::RecordTooLarge { .. }),
            "{error}"
        );
        assert!(spool.is_empty());
        assert_eq!(segment_files(dir.path()), Vec::<PathBuf>::new());
    }

    #[test]
    fn a_corruption_report_reads_as_one_line() {
        let report = SpoolCorruption {
            file: "spool/main/00000000000000000001.spool".into(),
            offset: 8,
            bytes: 17,
            kind: CorruptionKind::TornTail,
            moved_to: Some("spool/main/00000000000000000001.corrupt".into()),
        };
        assert_eq!(
            report.to_string(),
            "17 bytes at offset 8 of spool/main/00000000000000000001.spool (torn tail), \
             moved to spool/main/00000000000000000001.corrupt"
        );
    }
}
