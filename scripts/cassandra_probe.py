#!/usr/bin/env python3
"""A small CQL client for checking a Cassandra (or ScyllaDB) node, standard library only.

It speaks the CQL native protocol version 4 over one TCP connection: STARTUP, then
QUERY frames, decoding ROWS results for the common column types. scripts/cassandra.sh
uses `ready` to decide that a freshly started node answers queries; `roundtrip` is the
end-to-end check of the harness (make test-cassandra-harness).

Usage:
  cassandra_probe.py ready [HOST:PORT]      one query against system.local; prints the release
  cassandra_probe.py roundtrip [HOST:PORT]  create a keyspace and a table, write and read rows
HOST:PORT defaults to the first entry of SONICFORGE_CQL_NODES, else 127.0.0.1:9042.
Exit status: 0 on success, 1 when the node answered wrongly or not at all, 2 on bad usage.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time
import uuid
from dataclasses import dataclass

PROTOCOL_VERSION = 4
REQUEST_VERSION = PROTOCOL_VERSION
RESPONSE_VERSION = 0x80 | PROTOCOL_VERSION
HEADER = struct.Struct(">BBhBi")  # version, flags, stream, opcode, body length
# The server's default limit is 16 MiB per frame (native_transport_max_frame_size);
# anything larger is a broken or hostile peer, not a result this probe asked for.
MAX_BODY = 256 * 1024 * 1024

OP_ERROR = 0x00
OP_STARTUP = 0x01
OP_READY = 0x02
OP_QUERY = 0x07
OP_RESULT = 0x08

RESULT_VOID = 0x0001
RESULT_ROWS = 0x0002
RESULT_SET_KEYSPACE = 0x0003
RESULT_SCHEMA_CHANGE = 0x0005

CONSISTENCY_ONE = 0x0001
QUERY_FLAG_VALUES = 0x01

ROWS_FLAG_GLOBAL_TABLES_SPEC = 0x0001
ROWS_FLAG_HAS_MORE_PAGES = 0x0002
ROWS_FLAG_NO_METADATA = 0x0004

# Column type ids of the protocol (section 4.2.5.2 of the v4 specification).
TYPE_CUSTOM = 0x0000
TYPE_ASCII = 0x0001
TYPE_BIGINT = 0x0002
TYPE_BLOB = 0x0003
TYPE_BOOLEAN = 0x0004
TYPE_COUNTER = 0x0005
TYPE_DOUBLE = 0x0007
TYPE_FLOAT = 0x0008
TYPE_INT = 0x0009
TYPE_TIMESTAMP = 0x000B
TYPE_UUID = 0x000C
TYPE_VARCHAR = 0x000D
TYPE_TIMEUUID = 0x000F
TYPE_INET = 0x0010
TYPE_LIST = 0x0020
TYPE_MAP = 0x0021
TYPE_SET = 0x0022
TYPE_UDT = 0x0030
TYPE_TUPLE = 0x0031


class ProbeError(Exception):
    """The node could not be reached, answered with an error, or sent bytes that are not CQL."""


class ServerError(ProbeError):
    """An ERROR frame: the server's error code and message."""

    def __init__(self, code: int, message: str):
        super().__init__(f"server error 0x{code:04x}: {message}")
        self.code = code
        self.message = message


class Reader:
    """Reads protocol notation ([int], [string], [bytes], ...) from one frame body."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, count: int) -> bytes:
        if count < 0 or self.pos + count > len(self.data):
            raise ProbeError(
                f"truncated frame body: wanted {count} bytes at offset {self.pos} of {len(self.data)}"
            )
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def i32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def string(self) -> str:
        return self.take(self.u16()).decode("utf-8", errors="replace")

    def value(self) -> bytes | None:
        length = self.i32()
        if length < 0:
            return None
        return self.take(length)


@dataclass
class ColumnType:
    """A column's type option: its id and, for collections, tuples and UDTs, the inner types."""

    type_id: int
    inner: tuple["ColumnType", ...] = ()


@dataclass
class Rows:
    """A decoded ROWS result."""

    columns: list[str]
    rows: list[list[object]]


def encode_string_map(entries: dict[str, str]) -> bytes:
    out = struct.pack(">H", len(entries))
    for key, value in entries.items():
        for text in (key, value):
            raw = text.encode("utf-8")
            out += struct.pack(">H", len(raw)) + raw
    return out


def encode_frame(stream: int, opcode: int, body: bytes) -> bytes:
    return HEADER.pack(REQUEST_VERSION, 0, stream, opcode, len(body)) + body


def encode_query(query: str, values: list[bytes | None] | None = None) -> bytes:
    raw = query.encode("utf-8")
    body = struct.pack(">i", len(raw)) + raw + struct.pack(">H", CONSISTENCY_ONE)
    if not values:
        return body + bytes([0])
    body += bytes([QUERY_FLAG_VALUES]) + struct.pack(">H", len(values))
    for value in values:
        body += struct.pack(">i", -1) if value is None else struct.pack(">i", len(value)) + value
    return body


def read_type(reader: Reader, depth: int = 0) -> ColumnType:
    if depth > 32:
        raise ProbeError("column type nested more than 32 levels deep")
    type_id = reader.u16()
    if type_id == TYPE_CUSTOM:
        reader.string()  # the Java class name of the custom type
        return ColumnType(type_id)
    if type_id in (TYPE_LIST, TYPE_SET):
        return ColumnType(type_id, (read_type(reader, depth + 1),))
    if type_id == TYPE_MAP:
        return ColumnType(type_id, (read_type(reader, depth + 1), read_type(reader, depth + 1)))
    if type_id == TYPE_UDT:
        reader.string()  # keyspace
        reader.string()  # type name
        fields = []
        for _ in range(reader.u16()):
            reader.string()  # field name
            fields.append(read_type(reader, depth + 1))
        return ColumnType(type_id, tuple(fields))
    if type_id == TYPE_TUPLE:
        return ColumnType(type_id, tuple(read_type(reader, depth + 1) for _ in range(reader.u16())))
    return ColumnType(type_id)


def decode_value(column_type: ColumnType, raw: bytes | None) -> object:
    """Decodes one cell; types this probe does not need come back as raw bytes."""
    if raw is None:
        return None
    type_id = column_type.type_id
    try:
        if type_id in (TYPE_ASCII, TYPE_VARCHAR):
            return raw.decode("utf-8")
        if type_id in (TYPE_BIGINT, TYPE_COUNTER, TYPE_TIMESTAMP):
            return struct.unpack(">q", raw)[0]
        if type_id == TYPE_INT:
            return struct.unpack(">i", raw)[0]
        if type_id == TYPE_BOOLEAN:
            return raw != b"\x00"
        if type_id == TYPE_DOUBLE:
            return struct.unpack(">d", raw)[0]
        if type_id == TYPE_FLOAT:
            return struct.unpack(">f", raw)[0]
        if type_id in (TYPE_UUID, TYPE_TIMEUUID):
            return uuid.UUID(bytes=raw)
        if type_id == TYPE_INET:
            return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)
        if type_id in (TYPE_LIST, TYPE_SET):
            reader = Reader(raw)
            return [decode_value(column_type.inner[0], reader.value()) for _ in range(reader.i32())]
        if type_id == TYPE_MAP:
            reader = Reader(raw)
            pairs = []
            for _ in range(reader.i32()):
                key = decode_value(column_type.inner[0], reader.value())
                pairs.append((key, decode_value(column_type.inner[1], reader.value())))
            return pairs
    except (struct.error, ValueError, UnicodeDecodeError) as error:
        raise ProbeError(f"cell of type 0x{type_id:04x} is malformed: {error}") from error
    return raw


def decode_rows(reader: Reader) -> Rows:
    flags = reader.i32()
    column_count = reader.i32()
    if column_count < 0:
        raise ProbeError(f"negative column count {column_count}")
    if flags & ROWS_FLAG_HAS_MORE_PAGES:
        reader.value()  # paging state; the probe reads the first page only
    columns: list[str] = []
    types: list[ColumnType] = []
    if not flags & ROWS_FLAG_NO_METADATA:
        global_spec = bool(flags & ROWS_FLAG_GLOBAL_TABLES_SPEC)
        if global_spec:
            reader.string()
            reader.string()
        for _ in range(column_count):
            if not global_spec:
                reader.string()
                reader.string()
            columns.append(reader.string())
            types.append(read_type(reader))
    else:
        types = [ColumnType(TYPE_BLOB)] * column_count
    row_count = reader.i32()
    if row_count < 0:
        raise ProbeError(f"negative row count {row_count}")
    rows = []
    for _ in range(row_count):
        rows.append([decode_value(column_type, reader.value()) for column_type in types])
    return Rows(columns, rows)


def decode_response(opcode: int, body: bytes) -> object:
    """Turns a response frame into a value: None for READY and VOID, Rows, or a string."""
    reader = Reader(body)
    if opcode == OP_ERROR:
        code = reader.i32()
        raise ServerError(code, reader.string())
    if opcode == OP_READY:
        return None
    if opcode != OP_RESULT:
        raise ProbeError(f"unexpected response opcode 0x{opcode:02x}")
    kind = reader.i32()
    if kind == RESULT_VOID:
        return None
    if kind == RESULT_ROWS:
        return decode_rows(reader)
    if kind == RESULT_SET_KEYSPACE:
        return reader.string()
    if kind == RESULT_SCHEMA_CHANGE:
        change = reader.string()
        target = reader.string()
        return f"{change} {target}"
    raise ProbeError(f"unexpected result kind 0x{kind:04x}")


class Connection:
    """One CQL connection. Requests are sent one at a time on stream 1."""

    def __init__(self, host: str, port: int, timeout: float):
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as error:
            raise ProbeError(f"cannot connect to {host}:{port}: {error}") from error
        try:
            self.sock.settimeout(timeout)
            self.request(OP_STARTUP, encode_string_map({"CQL_VERSION": "3.0.0"}))
        except BaseException:
            self.sock.close()
            raise

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def receive_exactly(self, count: int) -> bytes:
        data = bytearray()
        while len(data) < count:
            try:
                chunk = self.sock.recv(count - len(data))
            except OSError as error:
                raise ProbeError(f"receive failed: {error}") from error
            if not chunk:
                raise ProbeError("connection closed by the server")
            data += chunk
        return bytes(data)

    def request(self, opcode: int, body: bytes) -> object:
        try:
            self.sock.sendall(encode_frame(1, opcode, body))
        except OSError as error:
            raise ProbeError(f"send failed: {error}") from error
        while True:
            version, _flags, stream, response_opcode, length = HEADER.unpack(
                self.receive_exactly(HEADER.size)
            )
            if version != RESPONSE_VERSION:
                raise ProbeError(f"not a CQL v{PROTOCOL_VERSION} response (version byte 0x{version:02x})")
            if not 0 <= length <= MAX_BODY:
                raise ProbeError(f"response body length {length} is out of bounds")
            body = self.receive_exactly(length)
            if stream == 1:
                return decode_response(response_opcode, body)
            # Stream -1 carries server events, which this probe never registers for.

    def query(self, cql: str, values: list[bytes | None] | None = None) -> object:
        return self.request(OP_QUERY, encode_query(cql, values))


def parse_node(text: str) -> tuple[str, int]:
    host, separator, port = text.strip().rpartition(":")
    if not separator or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def default_node() -> str:
    nodes = os.environ.get("SONICFORGE_CQL_NODES", "").split(",")
    return nodes[0].strip() or "127.0.0.1:9042"


def ready(host: str, port: int) -> str:
    """STARTUP and one query; returns the node's release version."""
    with Connection(host, port, timeout=10) as connection:
        result = connection.query("SELECT release_version FROM system.local")
    if not isinstance(result, Rows) or len(result.rows) != 1:
        raise ProbeError(f"system.local answered {result!r}, expected one row")
    return str(result.rows[0][0])


def roundtrip(host: str, port: int) -> list[str]:
    """Creates a keyspace and a table, writes rows, reads them back, drops the keyspace."""
    keyspace = f"harness_probe_{os.getpid()}_{int(time.time())}"
    report = []
    # Schema changes wait for the schema to settle; on a slow machine that takes seconds.
    with Connection(host, port, timeout=60) as connection:
        connection.query(
            f"CREATE KEYSPACE {keyspace} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        report.append(f"created keyspace {keyspace}")
        connection.query(
            f"CREATE TABLE {keyspace}.plays (station text, seq bigint, track uuid, "
            "title text, listeners int, PRIMARY KEY (station, seq))"
        )
        report.append("created table plays")
        written = []
        for seq in range(3):
            track = uuid.uuid4()
            title = f"track {seq} \u266a"
            listeners = 10 * seq - 5
            connection.query(
                f"INSERT INTO {keyspace}.plays (station, seq, track, title, listeners) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    b"main",
                    struct.pack(">q", seq),
                    track.bytes,
                    title.encode("utf-8"),
                    struct.pack(">i", listeners),
                ],
            )
            written.append([seq, track, title, listeners])
        report.append(f"wrote {len(written)} rows")
        result = connection.query(
            f"SELECT seq, track, title, listeners FROM {keyspace}.plays WHERE station = ?",
            [b"main"],
        )
        if not isinstance(result, Rows):
            raise ProbeError(f"SELECT answered {result!r}, expected rows")
        if result.columns != ["seq", "track", "title", "listeners"] or result.rows != written:
            raise ProbeError(f"read back {result.columns} {result.rows}, wrote {written}")
        report.append(f"read back {len(result.rows)} identical rows")
        connection.query(f"DROP KEYSPACE {keyspace}")
        report.append(f"dropped keyspace {keyspace}")
    return report


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[1] not in ("ready", "roundtrip"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        host, port = parse_node(argv[2] if len(argv) == 3 else default_node())
    except ValueError as error:
        print(f"cassandra_probe: {error}", file=sys.stderr)
        return 2
    try:
        if argv[1] == "ready":
            print(f"Cassandra {ready(host, port)} answers CQL at {host}:{port}")
        else:
            for line in roundtrip(host, port):
                print(f"{host}:{port}: {line}")
    except (ProbeError, OSError) as error:
        print(f"cassandra_probe: {host}:{port}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
