"""Unit tests of the CQL probe's frame encoding and decoding (no database needed).

The probe against a real node is `make test-cassandra-harness`.
"""

import socket
import struct
import threading
import unittest
import uuid

import cassandra_probe as probe


def string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw


def cell(raw: bytes | None) -> bytes:
    return struct.pack(">i", -1) if raw is None else struct.pack(">i", len(raw)) + raw


def rows_body(columns: list[tuple[str, bytes]], rows: list[list[bytes | None]]) -> bytes:
    """A RESULT/ROWS body with a global table spec; columns are (name, type option)."""
    body = struct.pack(">iii", probe.RESULT_ROWS, probe.ROWS_FLAG_GLOBAL_TABLES_SPEC, len(columns))
    body += string("ks") + string("t")
    for name, type_option in columns:
        body += string(name) + type_option
    body += struct.pack(">i", len(rows))
    for row in rows:
        body += b"".join(cell(value) for value in row)
    return body


def type_id(value: int) -> bytes:
    return struct.pack(">H", value)


class FrameEncodingTest(unittest.TestCase):
    def test_query_without_values_ends_with_empty_flags(self):
        body = probe.encode_query("SELECT 1")
        self.assertEqual(body, struct.pack(">i", 8) + b"SELECT 1" + struct.pack(">H", 1) + b"\x00")

    def test_query_values_carry_their_lengths_and_nulls(self):
        body = probe.encode_query("Q", [b"ab", None])
        expected = struct.pack(">i", 1) + b"Q" + struct.pack(">HBH", 1, probe.QUERY_FLAG_VALUES, 2)
        expected += struct.pack(">i", 2) + b"ab" + struct.pack(">i", -1)
        self.assertEqual(body, expected)

    def test_frame_header_is_version_4_request(self):
        frame = probe.encode_frame(1, probe.OP_QUERY, b"xyz")
        self.assertEqual(frame, bytes([0x04, 0, 0, 1, probe.OP_QUERY]) + struct.pack(">i", 3) + b"xyz")


class ResultDecodingTest(unittest.TestCase):
    def test_rows_of_scalar_types_decode_to_python_values(self):
        track = uuid.uuid4()
        body = rows_body(
            [
                ("title", type_id(probe.TYPE_VARCHAR)),
                ("seq", type_id(probe.TYPE_BIGINT)),
                ("listeners", type_id(probe.TYPE_INT)),
                ("track", type_id(probe.TYPE_UUID)),
                ("live", type_id(probe.TYPE_BOOLEAN)),
            ],
            [
                ["d\u00e9j\u00e0".encode(), struct.pack(">q", -7), struct.pack(">i", 42), track.bytes, b"\x01"],
                [None, struct.pack(">q", 0), None, None, b"\x00"],
            ],
        )
        result = probe.decode_response(probe.OP_RESULT, body)
        self.assertEqual(result.columns, ["title", "seq", "listeners", "track", "live"])
        self.assertEqual(result.rows, [["d\u00e9j\u00e0", -7, 42, track, True], [None, 0, None, None, False]])

    def test_collection_columns_are_skipped_correctly_and_decoded(self):
        tokens = struct.pack(">i", 2) + cell(b"-1") + cell(b"7")
        options = struct.pack(">i", 1) + cell(b"k") + cell(b"v")
        body = rows_body(
            [
                ("tokens", type_id(probe.TYPE_SET) + type_id(probe.TYPE_VARCHAR)),
                ("options", type_id(probe.TYPE_MAP) + type_id(probe.TYPE_ASCII) + type_id(probe.TYPE_VARCHAR)),
                ("after", type_id(probe.TYPE_INT)),
            ],
            [[tokens, options, struct.pack(">i", 5)]],
        )
        result = probe.decode_response(probe.OP_RESULT, body)
        self.assertEqual(result.rows, [[["-1", "7"], [("k", "v")], 5]])

    def test_unknown_types_come_back_as_raw_bytes(self):
        body = rows_body([("c", type_id(probe.TYPE_CUSTOM) + string("org.example.Type"))], [[b"\x01\x02"]])
        self.assertEqual(probe.decode_response(probe.OP_RESULT, body).rows, [[b"\x01\x02"]])

    def test_schema_change_and_void_results(self):
        change = struct.pack(">i", probe.RESULT_SCHEMA_CHANGE)
        change += string("CREATED") + string("KEYSPACE") + string("ks")
        self.assertEqual(probe.decode_response(probe.OP_RESULT, change), "CREATED KEYSPACE")
        self.assertIsNone(probe.decode_response(probe.OP_RESULT, struct.pack(">i", probe.RESULT_VOID)))

    def test_error_frame_carries_code_and_message(self):
        with self.assertRaises(probe.ServerError) as raised:
            probe.decode_response(probe.OP_ERROR, struct.pack(">i", 0x2200) + string("no keyspace"))
        self.assertEqual((raised.exception.code, raised.exception.message), (0x2200, "no keyspace"))

    def test_truncated_body_is_a_probe_error(self):
        body = rows_body([("seq", type_id(probe.TYPE_BIGINT))], [[struct.pack(">q", 1)]])
        for cut in range(len(body)):
            with self.subTest(cut=cut), self.assertRaises(probe.ProbeError):
                probe.decode_response(probe.OP_RESULT, body[:cut])

    def test_malformed_cell_is_a_probe_error(self):
        body = rows_body([("seq", type_id(probe.TYPE_BIGINT))], [[b"\x01\x02\x03"]])
        with self.assertRaises(probe.ProbeError):
            probe.decode_response(probe.OP_RESULT, body)

    def test_deeply_nested_type_is_refused(self):
        nested = type_id(probe.TYPE_LIST) * 100 + type_id(probe.TYPE_INT)
        body = rows_body([("c", nested)], [])
        with self.assertRaises(probe.ProbeError):
            probe.decode_response(probe.OP_RESULT, body)

    def test_negative_counts_are_refused(self):
        body = struct.pack(">iii", probe.RESULT_ROWS, 0, -1)
        with self.assertRaises(probe.ProbeError):
            probe.decode_response(probe.OP_RESULT, body)


class ConnectionTest(unittest.TestCase):
    """The probe against a listener that answers STARTUP with the given bytes."""

    def connect_to_server_sending(self, reply: bytes) -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)

        def serve():
            connection, _ = listener.accept()
            with connection:
                connection.recv(1024)
                connection.sendall(reply)

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        try:
            probe.Connection("127.0.0.1", listener.getsockname()[1], timeout=5).close()
        finally:
            server.join(timeout=5)

    def test_ready_reply_opens_the_connection(self):
        self.connect_to_server_sending(probe.HEADER.pack(probe.RESPONSE_VERSION, 0, 1, probe.OP_READY, 0))

    def test_event_frames_on_other_streams_are_skipped(self):
        event = probe.HEADER.pack(probe.RESPONSE_VERSION, 0, -1, 0x0C, 2) + b"\x00\x00"
        ready = probe.HEADER.pack(probe.RESPONSE_VERSION, 0, 1, probe.OP_READY, 0)
        self.connect_to_server_sending(event + ready)

    def test_non_cql_peer_is_a_probe_error(self):
        with self.assertRaisesRegex(probe.ProbeError, "not a CQL v4 response"):
            self.connect_to_server_sending(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    def test_oversized_body_length_is_refused_before_reading(self):
        header = probe.HEADER.pack(probe.RESPONSE_VERSION, 0, 1, probe.OP_READY, 0x7FFFFFFF)
        with self.assertRaisesRegex(probe.ProbeError, "out of bounds"):
            self.connect_to_server_sending(header)

    def test_server_closing_mid_frame_is_a_probe_error(self):
        with self.assertRaisesRegex(probe.ProbeError, "closed"):
            self.connect_to_server_sending(b"\x84\x00")

    def test_refused_connection_is_a_probe_error(self):
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        listener.close()
        with self.assertRaisesRegex(probe.ProbeError, "cannot connect"):
            probe.Connection("127.0.0.1", port, timeout=5)


class NodeAddressTest(unittest.TestCase):
    def test_host_and_port_are_split(self):
        self.assertEqual(probe.parse_node("127.0.0.1:9042"), ("127.0.0.1", 9042))
        self.assertEqual(probe.parse_node("[::1]:19042"), ("::1", 19042))

    def test_bad_addresses_are_value_errors(self):
        for text in ("127.0.0.1", ":9042", "host:port", "host:0", "host:70000"):
            with self.subTest(text=text), self.assertRaises(ValueError):
                probe.parse_node(text)


if __name__ == "__main__":
    unittest.main()
