"""Tests of scripts/bench_mastering.py's parsers and checks (no tool is run).

Run: python3 -m unittest discover -s scripts -p 'test_bench_mastering.py'
"""

import math
import struct
import sys
import tempfile
import unittest
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ left in scripts/
import bench_mastering as bm

EBUR128_TAIL = """\
[Parsed_ebur128_0 @ 0x5581] t: 179.9  TARGET:-23 LUFS    M: -14.2 S: -14.0     I: -14.1 LUFS
size=N/A time=00:03:00.00 bitrate=N/A speed= 256x
[Parsed_ebur128_0 @ 0x55c87e3d6cc0] Summary:

  Integrated loudness:
    I:         -14.1 LUFS
    Threshold: -24.3 LUFS

  Loudness range:
    LRA:         5.3 LU
    Threshold: -34.1 LUFS
    LRA low:   -18.5 LUFS
    LRA high:  -13.2 LUFS

  True peak:
    Peak:       -1.2 dBFS
"""

LOUDNORM_TAIL = """\
size=N/A time=00:03:00.00 bitrate=N/A speed=90.1x
[Parsed_loudnorm_0 @ 0x5581]
{
\t"input_i" : "-30.12",
\t"input_tp" : "-12.40",
\t"input_lra" : "9.60",
\t"input_thresh" : "-40.50",
\t"output_i" : "-14.02",
\t"output_tp" : "-1.00",
\t"output_lra" : "7.10",
\t"output_thresh" : "-24.30",
\t"normalization_type" : "dynamic",
\t"target_offset" : "0.02"
}
"""


def float_wav(path: Path, frames: int, channels: int = 2, rate: int = 48000, extra=b"") -> None:
    """A 32-bit float WAV of silence, with an optional chunk before the data."""
    data = b"\0" * (frames * channels * 4)
    fmt = struct.pack("<HHIIHH", 3, channels, rate, rate * channels * 4, channels * 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def row(tool, track="dull", lufs=-14.0, tp=-1.2, spectral=1.0, status="ok"):
    return bm.Row(
        tool,
        track,
        seconds=1.0,
        track_seconds=180.0,
        lufs=lufs,
        true_peak_dbtp=tp,
        spectral_error_db=spectral,
        status=status,
    )


class ParsersTest(unittest.TestCase):
    def test_ebur128_summary_gives_loudness_range_and_true_peak(self):
        measured = bm.parse_ebur128_summary(EBUR128_TAIL)
        self.assertEqual(measured, bm.Loudness(lufs=-14.1, true_peak_dbtp=-1.2, lra=5.3))

    def test_ebur128_summary_of_silence_is_minus_infinity(self):
        silent = EBUR128_TAIL.replace("-14.1 LUFS\n    Thr", "-70.0 LUFS\n    Thr")
        silent = silent.replace("-1.2 dBFS", "-inf dBFS")
        measured = bm.parse_ebur128_summary(silent)
        self.assertEqual(measured.lufs, -70.0)
        self.assertTrue(math.isinf(measured.true_peak_dbtp))

    def test_ebur128_without_summary_is_an_error(self):
        with self.assertRaisesRegex(ValueError, "no ebur128 summary"):
            bm.parse_ebur128_summary("Error opening input file x.wav")

    def test_loudnorm_json_is_the_last_block(self):
        measured = bm.parse_loudnorm_json('{ "old" : "1" }\n' + LOUDNORM_TAIL)
        self.assertEqual(measured["input_i"], "-30.12")
        self.assertEqual(measured["normalization_type"], "dynamic")

    def test_second_pass_applies_the_measurements_linearly(self):
        measured = bm.parse_loudnorm_json(LOUDNORM_TAIL)
        second = bm.loudnorm_second_pass_filter(measured, -14.0, -1.0, 11.0)
        self.assertEqual(
            second,
            "loudnorm=I=-14:TP=-1:LRA=11:measured_I=-30.12:measured_TP=-12.40:"
            "measured_LRA=9.60:measured_thresh=-40.50:offset=0.02:linear=true:"
            "print_format=json",
        )

    def test_second_pass_clamps_a_clipping_input_into_ffmpegs_ranges(self):
        measured = {
            "input_i": "3.10",
            "input_tp": "12.00",
            "input_lra": "120",
            "input_thresh": "-7.00",
            "target_offset": "-inf",
        }
        second = bm.loudnorm_second_pass_filter(measured, -14.0, -1.0, 50.0)
        self.assertIn("measured_I=0.00", second)
        self.assertIn("measured_LRA=99.00", second)
        self.assertIn("offset=0.00", second)

    def test_second_pass_refuses_silence(self):
        measured = {
            "input_i": "-inf",
            "input_tp": "-inf",
            "input_lra": "0",
            "input_thresh": "-70",
            "target_offset": "0",
        }
        with self.assertRaisesRegex(ValueError, "silence"):
            bm.loudnorm_second_pass_filter(measured, -14.0, -1.0, 7.0)

    def test_loudnorm_lra_holds_the_inputs_range(self):
        self.assertEqual(bm.loudnorm_lra(3.0), 7.0)
        self.assertEqual(bm.loudnorm_lra(9.6), 11.0)
        self.assertEqual(bm.loudnorm_lra(80.0), 50.0)
        self.assertEqual(bm.loudnorm_lra(float("nan")), 7.0)

    def test_help_without_the_mastering_cli_names_what_is_missing(self):
        old = "Commands:\n  run           Start\n  check-config  Check\n  help          Print\n"
        self.assertEqual(bm.help_lists_subcommands(old), list(bm.SUBCOMMANDS))
        new = old + "  master            M\n  mastering-corpus  C\n  spectral-error    S\n"
        self.assertEqual(bm.help_lists_subcommands(new), [])

    def test_wav_seconds_reads_float_wav_headers_past_other_chunks(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "a.wav"
            float_wav(path, 48000 * 3, extra=b"LIST" + struct.pack("<I", 3) + b"abc\0")
            self.assertAlmostEqual(bm.wav_seconds(path), 3.0)

    def test_wav_seconds_refuses_other_files(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "a.wav"
            path.write_bytes(b"fLaC" + b"\0" * 40)
            with self.assertRaisesRegex(ValueError, "not a RIFF/WAVE"):
                bm.wav_seconds(path)


class TargetsTest(unittest.TestCase):
    def check(self, ours, matchering=None):
        matchering = matchering or row("matchering", spectral=2.0)
        return bm.check_targets(ours, matchering, -14.0, -1.0, 0.5)

    def test_row_meeting_every_target_passes(self):
        self.assertTrue(self.check(row("sonicforge cpu", lufs=-14.5, tp=-1.0)).passed)

    def test_loudness_outside_half_a_lu_fails(self):
        check = self.check(row("sonicforge cpu", lufs=-14.6))
        self.assertFalse(check.passed)
        self.assertEqual(check.loudness, "FAIL (-14.6 LUFS)")

    def test_true_peak_above_the_ceiling_fails(self):
        check = self.check(row("sonicforge gpu", tp=-0.9))
        self.assertFalse(check.passed)
        self.assertTrue(check.true_peak.startswith("FAIL"))

    def test_spectral_error_equal_to_matchering_fails(self):
        check = self.check(row("sonicforge cpu", spectral=2.0))
        self.assertFalse(check.passed)
        self.assertEqual(check.spectral, "FAIL (2.00 dB vs 2.00 dB)")

    def test_missing_matchering_figure_fails_rather_than_passes(self):
        failed = row("matchering", status="failed", spectral=None)
        check = self.check(row("sonicforge cpu"), failed)
        self.assertFalse(check.passed)
        self.assertIn("no Matchering figure", check.spectral)

    def test_no_gpu_adapter_is_not_applicable(self):
        self.assertIsNone(self.check(row("sonicforge gpu", status="no-adapter")).passed)

    def test_failed_run_fails(self):
        self.assertFalse(self.check(row("sonicforge cpu", status="failed")).passed)


class TableTest(unittest.TestCase):
    def test_rows_show_time_real_time_factor_and_figures(self):
        table = bm.results_table(
            [
                bm.Row(
                    "input",
                    "dull",
                    track_seconds=180.0,
                    lufs=-20.04,
                    true_peak_dbtp=-3.0,
                    spectral_error_db=6.5,
                ),
                row("sonicforge cpu"),
                row("sonicforge gpu", status="no-adapter"),
            ]
        )
        lines = table.splitlines()
        self.assertEqual(lines[2], "| input | dull | - | - | -20.0 | -3.0 | 6.50 |")
        self.assertEqual(
            lines[3], "| sonicforge cpu | dull | 1.00 s | 180x | -14.0 | -1.2 | 1.00 |"
        )
        self.assertEqual(lines[4], "| sonicforge gpu | dull | no GPU adapter | - | - | - | - |")

    def test_markers_keep_everything_outside_them(self):
        doc = f"# Perf\n\nold\n\n{bm.MARKER_START}\nstale\n{bm.MARKER_END}\ntrailer\n"
        new = bm.replace_between_markers(doc, "\nfresh table\n")
        self.assertEqual(
            new, f"# Perf\n\nold\n\n{bm.MARKER_START}\nfresh table\n{bm.MARKER_END}\ntrailer\n"
        )
        self.assertEqual(bm.replace_between_markers(new, "fresh table"), new)

    def test_missing_markers_are_an_error(self):
        with self.assertRaisesRegex(ValueError, "markers"):
            bm.replace_between_markers("# Perf\n", "table")


if __name__ == "__main__":
    unittest.main()
