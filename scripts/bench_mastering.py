#!/usr/bin/env python3
"""Side-by-side mastering benchmark: `make bench-mastering` (issue 4).

Masters every track of the engine's test corpus with four tools on the same files:
our CPU path, our GPU path, Matchering 2.0 and ffmpeg's two-pass loudnorm. Measures
every output with ffmpeg's `ebur128=peak=true` filter (an independent meter) and with
`sonicforge spectral-error` against the corpus reference, times every tool, prints
one table and writes it between the bench-mastering markers of docs/PERFORMANCE.md.
Then checks the issue's targets on our rows and exits 1 if one fails or a tool
failed (always after writing the table).

Standard library only: Matchering runs in its own virtualenv, through this same
file's `matchering` subcommand (scripts/bench-mastering.sh sets both up).

    bench_mastering.py run --sonicforge BIN --python VENV_PYTHON --workdir DIR ...
    bench_mastering.py matchering TARGET REFERENCE OUTPUT   (inside the virtualenv)
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

MATCHERING_VERSION = "2.0.6"
SAMPLE_RATE = 48000
MARKER_START = "<!-- bench-mastering:start -->"
MARKER_END = "<!-- bench-mastering:end -->"
# The corpus tracks, in the order of the table (a "-" in a file name counts as "_");
# any other track the engine writes comes after them. The reference is the EQ target of every tool, not a row.
TRACK_ORDER = ("quiet", "loud", "bass_heavy", "dull", "bright")
REFERENCE = "reference"
SUBCOMMANDS = ("mastering-corpus", "master", "spectral-error")
TOOLS = ("input", "sonicforge cpu", "sonicforge gpu", "matchering", "ffmpeg loudnorm")
OUR_TOOLS = ("sonicforge cpu", "sonicforge gpu")
# What `sonicforge master --backend gpu` says when there is no adapter to run on.
NO_ADAPTER = re.compile(r"no (suitable )?GPU adapter", re.IGNORECASE)
STDERR_TAIL_LINES = 15
WIDTH = 88  # prose width of docs/PERFORMANCE.md


class ToolError(Exception):
    """A tool that is missing, exited non-zero or printed something unreadable."""

    def __init__(self, tool: str, message: str, stderr: str = "", command: list[str] | None = None):
        super().__init__(f"{tool}: {message}")
        self.tool = tool
        self.message = message
        self.stderr_tail = tail(stderr)
        self.command = command or []

    def last_line(self) -> str:
        lines = self.stderr_tail.splitlines()
        return lines[-1].strip() if lines else ""

    def report(self) -> str:
        text = f"{self.tool}: {self.message}"
        if self.command:
            text += f"\n  command: {' '.join(self.command)}"
        if self.stderr_tail:
            indented = "\n".join("    " + line for line in self.stderr_tail.splitlines())
            text += f"\n  stderr (last lines):\n{indented}"
        return text


def tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    kept = [line.rstrip() for line in text.strip().splitlines()]
    return "\n".join(kept[-lines:])


def run_tool(tool: str, cmd: list[str], env: dict | None = None) -> tuple[str, str, float]:
    """Runs `cmd`; returns (stdout, stderr, wall seconds) or raises ToolError."""
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, errors="replace", env=env, check=False
        )
    except FileNotFoundError:
        raise ToolError(tool, f"{cmd[0]} not found") from None
    except PermissionError:
        raise ToolError(tool, f"{cmd[0]} is not executable") from None
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise ToolError(
            tool,
            f"exited with status {proc.returncode}",
            proc.stderr or proc.stdout,
            command=cmd,
        )
    return proc.stdout, proc.stderr, wall


# ---------------------------------------------------------------------------------
# Parsers of what the tools print (unit-tested in test_bench_mastering.py)


def wav_seconds(path: Path) -> float:
    """Duration of a RIFF/WAVE file from its header (any sample format)."""
    with open(path, "rb") as f:
        header = f.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            raise ValueError(f"{path} is not a RIFF/WAVE file")
        byte_rate = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                raise ValueError(f"{path} has no data chunk")
            chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"fmt ":
                fmt = f.read(size)
                if len(fmt) < 16:
                    raise ValueError(f"{path} has a short fmt chunk")
                byte_rate = struct.unpack("<I", fmt[8:12])[0]
                if size % 2:
                    f.seek(1, os.SEEK_CUR)
            elif chunk_id == b"data":
                if not byte_rate:
                    raise ValueError(f"{path} has its data chunk before its fmt chunk")
                if size == 0xFFFFFFFF:  # streamed: size unknown, take the rest
                    size = os.path.getsize(path) - f.tell()
                return size / byte_rate
            else:
                f.seek(size + size % 2, os.SEEK_CUR)


@dataclass
class Loudness:
    lufs: float
    true_peak_dbtp: float
    lra: float


def _number(text: str) -> float:
    """A figure as ffmpeg prints it: "-14.02", "-inf", sometimes quoted."""
    return float(str(text).strip().strip('"'))


def parse_ebur128_summary(stderr: str) -> Loudness:
    """Integrated loudness, loudness range and true peak from the summary that
    ffmpeg's `ebur128=peak=true` filter prints at the end."""
    at = stderr.rfind("Summary:")
    if at < 0:
        raise ValueError("no ebur128 summary in ffmpeg's output")
    summary = stderr[at:]
    values = {}
    for key, pattern in (
        ("lufs", r"\bI:\s*(-?inf|-?[0-9.]+)\s*LUFS"),
        ("lra", r"\bLRA:\s*(-?inf|-?[0-9.]+)\s*LU\b"),
        ("true_peak_dbtp", r"\bPeak:\s*(-?inf|-?[0-9.]+)\s*dBFS"),
    ):
        found = re.search(pattern, summary)
        if not found:
            raise ValueError(f"no {key} in the ebur128 summary:\n{tail(summary)}")
        values[key] = _number(found.group(1))
    return Loudness(**values)


def parse_loudnorm_json(stderr: str) -> dict[str, str]:
    """The JSON block that loudnorm prints with print_format=json (the last one)."""
    blocks = re.findall(r"\{[^{}]*\}", stderr)
    if not blocks:
        raise ValueError("no loudnorm JSON in ffmpeg's output")
    return json.loads(blocks[-1])


def loudnorm_lra(measured_lra: float) -> float:
    """The LRA target for loudnorm: 7 (its default) unless the input's range is wider,
    since linear mode is possible only when the target range holds the input's."""
    if not math.isfinite(measured_lra):
        return 7.0
    return float(min(50, max(7, math.ceil(measured_lra) + 1)))


def clamp(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


def loudnorm_second_pass_filter(
    measured: dict[str, str], target_lufs: float, ceiling: float, lra: float
) -> str:
    """The second-pass loudnorm filter with the first pass's measurements (each
    clamped into the range ffmpeg accepts for it) and linear=true."""
    i = _number(measured["input_i"])
    if not math.isfinite(i):
        raise ValueError(f"loudnorm measured an integrated loudness of {i} (silence?)")
    tp = _number(measured["input_tp"])
    lra_in = _number(measured["input_lra"])
    thresh = _number(measured["input_thresh"])
    offset = _number(measured["target_offset"])
    parts = [
        f"I={target_lufs:g}",
        f"TP={ceiling:g}",
        f"LRA={lra:g}",
        f"measured_I={clamp(i, -99, 0):.2f}",
        f"measured_TP={clamp(tp if math.isfinite(tp) else -99, -99, 99):.2f}",
        f"measured_LRA={clamp(lra_in if math.isfinite(lra_in) else 0, 0, 99):.2f}",
        f"measured_thresh={clamp(thresh if math.isfinite(thresh) else -99, -99, 0):.2f}",
        f"offset={clamp(offset if math.isfinite(offset) else 0, -99, 99):.2f}",
        "linear=true",
        "print_format=json",
    ]
    return "loudnorm=" + ":".join(parts)


def help_lists_subcommands(help_text: str) -> list[str]:
    """The subcommands this benchmark needs that `sonicforge help` does not list."""
    listed = set(re.findall(r"^\s{2,}([a-z][a-z0-9-]*)\s", help_text, re.MULTILINE))
    return [name for name in SUBCOMMANDS if name not in listed]


def replace_between_markers(document: str, section: str) -> str:
    start = document.find(MARKER_START)
    end = document.find(MARKER_END)
    if start < 0 or end < 0 or end < start:
        raise ValueError(f"the markers {MARKER_START} and {MARKER_END} are missing")
    before = document[: start + len(MARKER_START)]
    return before + "\n" + section.strip("\n") + "\n" + document[end:]


# ---------------------------------------------------------------------------------
# Results


@dataclass
class Row:
    tool: str
    track: str
    seconds: float | None = None  # wall time of the tool on this track
    track_seconds: float | None = None
    lufs: float | None = None
    true_peak_dbtp: float | None = None
    spectral_error_db: float | None = None
    status: str = "ok"  # ok | no-adapter | failed
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def rtf(self) -> float | None:
        if self.seconds and self.track_seconds:
            return self.track_seconds / self.seconds
        return None


@dataclass
class Check:
    tool: str
    track: str
    loudness: str
    true_peak: str
    spectral: str
    passed: bool | None  # None: not applicable (no GPU adapter)


def check_targets(
    row: Row, matchering: Row | None, target_lufs: float, ceiling: float, tolerance: float
) -> Check:
    """The issue's targets for one of our rows."""
    if row.status == "no-adapter":
        na = "n/a"
        return Check(row.tool, row.track, na, na, na, None)
    if row.status != "ok":
        failed = "FAIL (tool failed)"
        return Check(row.tool, row.track, failed, failed, failed, False)
    loud_ok = row.lufs is not None and abs(row.lufs - target_lufs) <= tolerance + 1e-9
    peak_ok = row.true_peak_dbtp is not None and row.true_peak_dbtp <= ceiling + 1e-9
    if matchering is None or matchering.status != "ok" or matchering.spectral_error_db is None:
        spectral_ok = False
        spectral = f"FAIL ({fmt(row.spectral_error_db, 2)} dB, no Matchering figure)"
    else:
        spectral_ok = (
            row.spectral_error_db is not None
            and row.spectral_error_db < matchering.spectral_error_db
        )
        spectral = (
            f"{'PASS' if spectral_ok else 'FAIL'} ({fmt(row.spectral_error_db, 2)} dB"
            f" vs {fmt(matchering.spectral_error_db, 2)} dB)"
        )
    return Check(
        row.tool,
        row.track,
        f"{'PASS' if loud_ok else 'FAIL'} ({fmt(row.lufs, 1)} LUFS)",
        f"{'PASS' if peak_ok else 'FAIL'} ({fmt(row.true_peak_dbtp, 1)} dBTP)",
        spectral,
        loud_ok and peak_ok and spectral_ok,
    )


def fmt(value: float | None, decimals: int) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "-inf" if value < 0 else "inf"
    return f"{value:.{decimals}f}"


def fmt_rtf(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}x" if value >= 100 else f"{value:.1f}x"


def results_table(rows: list[Row]) -> str:
    lines = [
        "| tool | track | time | real-time factor | LUFS | true peak dBTP | spectral error dB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        if row.status == "ok":
            time_cell = "-" if row.seconds is None else f"{row.seconds:.2f} s"
            cells = [
                time_cell,
                fmt_rtf(row.rtf),
                fmt(row.lufs, 1),
                fmt(row.true_peak_dbtp, 1),
                fmt(row.spectral_error_db, 2),
            ]
        else:
            word = "no GPU adapter" if row.status == "no-adapter" else "FAILED"
            cells = [word, "-", "-", "-", "-"]
        lines.append(f"| {row.tool} | {row.track} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def checks_table(checks: list[Check], target_lufs: float, ceiling: float, tolerance: float) -> str:
    header = (
        f"| tool | track | loudness within {tolerance:g} LU of {target_lufs:g} LUFS"
        f" | true peak at or below {ceiling:.1f} dBTP | spectral error below Matchering's"
        " | result |"
    )
    lines = [header, "| --- | --- | --- | --- | --- | --- |"]
    for c in checks:
        result = "n/a (no GPU adapter)" if c.passed is None else ("PASS" if c.passed else "FAIL")
        lines.append(
            f"| {c.tool} | {c.track} | {c.loudness} | {c.true_peak} | {c.spectral} | {result} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------
# The machine


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    try:
        with open("/proc/loadavg", encoding="utf-8") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def ffmpeg_version(ffmpeg: str) -> str:
    out, _, _ = run_tool("ffmpeg", [ffmpeg, "-hide_banner", "-version"])
    first = out.splitlines()[0] if out else "ffmpeg"
    found = re.match(r"ffmpeg version (\S+)", first)
    return found.group(1) if found else first


# ---------------------------------------------------------------------------------
# The benchmark


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.sonicforge = str(args.sonicforge)
        self.ffmpeg = args.ffmpeg
        self.workdir = Path(args.workdir).resolve()
        self.corpus = self.workdir / "corpus"
        self.out = self.workdir / "out"
        self.rows: list[Row] = []
        self.failures: list[tuple[Row, ToolError]] = []
        self.notes: list[str] = []
        self.adapter_line = ""
        self.matchering_versions = ""

    # Preflight: every tool is there before anything long starts.

    def preflight(self) -> None:
        if shutil.which(self.ffmpeg) is None:
            raise ToolError("ffmpeg", f"{self.ffmpeg} not found: install Debian's ffmpeg package")
        if not os.access(self.sonicforge, os.X_OK):
            raise ToolError(
                "sonicforge",
                f"no executable at {self.sonicforge}: build it with "
                "`cargo build --release --locked -p sonicforge-actors --bin sonicforge`",
            )
        out, err, _ = run_tool("sonicforge", [self.sonicforge, "help"])
        missing = help_lists_subcommands(out + err)
        if missing:
            raise ToolError(
                "sonicforge",
                f"{self.sonicforge} has no {', '.join(missing)} subcommand: "
                "rebuild it from a tree that has the mastering CLI",
            )
        self.ffmpeg_version = ffmpeg_version(self.ffmpeg)
        probe = (
            "import importlib.metadata as m, matchering; "
            "print(matchering.__version__, m.version('numpy'), m.version('scipy'))"
        )
        out, _, _ = run_tool("matchering", [self.args.python, "-c", probe])
        version, numpy, scipy = out.split()
        if version != MATCHERING_VERSION:
            raise ToolError(
                "matchering",
                f"the virtualenv has Matchering {version}, not {MATCHERING_VERSION}",
            )
        self.matchering_versions = f"Matchering {version} (numpy {numpy}, scipy {scipy})"

    def write_corpus(self) -> list[Path]:
        if self.corpus.exists():
            shutil.rmtree(self.corpus)
        cmd = [self.sonicforge, "mastering-corpus", str(self.corpus)]
        cmd += ["--seconds", str(self.args.seconds)]
        print(f"writing the corpus ({self.args.seconds} s per track) to {self.corpus}")
        _, _, wall = run_tool("sonicforge mastering-corpus", cmd)
        print(f"  corpus written in {wall:.1f} s")
        # bass_heavy or bass-heavy: the engine's spelling is kept in the table.
        names = {p.stem.replace("-", "_"): p for p in self.corpus.glob("*.wav")}
        expected = set(TRACK_ORDER) | {REFERENCE}
        if not expected <= set(names):
            raise ToolError(
                "sonicforge mastering-corpus",
                f"{self.corpus} lacks {', '.join(sorted(expected - set(names)))}.wav",
            )
        order = list(TRACK_ORDER) + sorted(set(names) - expected)
        return [names[name] for name in order]

    # Measurements

    def measure(self, row: Row, path: Path) -> None:
        cmd = [self.ffmpeg, "-hide_banner", "-nostats", "-nostdin", "-i", str(path)]
        cmd += ["-map", "0:a:0", "-filter:a", "ebur128=peak=true:framelog=verbose"]
        cmd += ["-f", "null", "-"]
        _, err, _ = run_tool("ffmpeg ebur128", cmd)
        try:
            loudness = parse_ebur128_summary(err)
        except ValueError as e:
            raise ToolError("ffmpeg ebur128", str(e), err) from None
        row.lufs = loudness.lufs
        row.true_peak_dbtp = loudness.true_peak_dbtp
        row.extra["lra"] = loudness.lra
        cmd = [self.sonicforge, "spectral-error", str(path), str(self.corpus / "reference.wav")]
        out, err, _ = run_tool("sonicforge spectral-error", cmd)
        try:
            row.spectral_error_db = float(out.split()[-1])
        except (IndexError, ValueError):
            raise ToolError(
                "sonicforge spectral-error", f"printed no number: {out.strip()!r}", err
            ) from None

    # The tools

    def sonicforge_master(self, backend: str, track: Path, output: Path) -> tuple[float, dict]:
        stats_path = output.with_suffix(".stats.json")
        cmd = [self.sonicforge, "master", str(track), str(output)]
        cmd += ["--reference", str(self.corpus / "reference.wav")]
        cmd += [
            "--target-lufs",
            f"{self.args.target_lufs:g}",
            "--ceiling",
            f"{self.args.ceiling:g}",
        ]
        cmd += ["--backend", backend, "--stats-json", str(stats_path)]
        _, _, wall = run_tool(f"sonicforge {backend}", cmd)
        try:
            stats = json.loads(stats_path.read_text())
        except (OSError, ValueError) as e:
            raise ToolError(f"sonicforge {backend}", f"unreadable --stats-json: {e}") from None
        if stats.get("backend") != backend:
            raise ToolError(
                f"sonicforge {backend}",
                f"asked for --backend {backend}, ran on {stats.get('backend')!r}",
            )
        return wall, stats

    def matchering(self, track: Path, output: Path) -> tuple[float, dict]:
        cmd = [self.args.python, os.path.abspath(__file__), "matchering"]
        cmd += [str(track), str(self.corpus / "reference.wav"), str(output)]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        out, err, wall = run_tool("matchering", cmd, env=env)
        warnings = [
            line.split(":", 1)[1].strip()
            for line in err.splitlines()
            if line.startswith("matchering warning:")
        ]
        return wall, {"warnings": warnings, "process": out.strip()}

    def loudnorm(self, track: Path, output: Path, input_lra: float) -> tuple[float, dict]:
        tool = "ffmpeg loudnorm"
        target = f"I={self.args.target_lufs:g}:TP={self.args.ceiling:g}"
        base = [self.ffmpeg, "-hide_banner", "-nostats", "-nostdin", "-i", str(track)]
        wall = 0.0
        lra = loudnorm_lra(input_lra)
        for _ in range(2):  # a second first pass only if the input's LRA was wider
            cmd = base + ["-map", "0:a:0", "-filter:a"]
            cmd += [f"loudnorm={target}:LRA={lra:g}:print_format=json", "-f", "null", "-"]
            _, err, seconds = run_tool(f"{tool} (first pass)", cmd)
            wall += seconds
            try:
                measured = parse_loudnorm_json(err)
                measured_lra = _number(measured["input_lra"])
            except (ValueError, KeyError) as e:
                raise ToolError(f"{tool} (first pass)", f"unreadable JSON: {e}", err) from None
            if loudnorm_lra(measured_lra) <= lra:
                break
            lra = loudnorm_lra(measured_lra)
        try:
            second = loudnorm_second_pass_filter(
                measured, self.args.target_lufs, self.args.ceiling, lra
            )
        except (ValueError, KeyError) as e:
            raise ToolError(f"{tool} (first pass)", str(e), err) from None
        cmd = base + ["-map", "0:a:0", "-filter:a", second]
        cmd += ["-ar", str(SAMPLE_RATE), "-c:a", "pcm_f32le", "-y", str(output)]
        _, err, seconds = run_tool(f"{tool} (second pass)", cmd)
        wall += seconds
        try:
            mode = parse_loudnorm_json(err).get("normalization_type", "?")
        except ValueError:
            mode = "?"
        return wall, {"lra": lra, "normalization_type": mode}

    def run_one(self, tool: str, track: Path, input_row: Row) -> Row:
        row = Row(tool, track.stem, track_seconds=input_row.track_seconds)
        folder = self.out / tool.replace(" ", "-")
        folder.mkdir(parents=True, exist_ok=True)
        output = folder / f"{track.stem}.wav"
        try:
            if tool in OUR_TOOLS:
                backend = tool.split()[-1]
                try:
                    row.seconds, stats = self.sonicforge_master(backend, track, output)
                except ToolError as e:
                    said = [
                        line.strip()
                        for line in e.stderr_tail.splitlines()
                        if NO_ADAPTER.search(line)
                    ]
                    if backend == "gpu" and said:
                        row.status = "no-adapter"
                        row.note = said[0]
                        if not self.adapter_line:
                            self.adapter_line = f"none ({row.note})"
                        return row
                    raise
                row.extra["engine"] = stats
                if backend == "gpu" and stats.get("adapter"):
                    self.adapter_line = str(stats["adapter"])
            elif tool == "matchering":
                row.seconds, row.extra["matchering"] = self.matchering(track, output)
                for warning in row.extra["matchering"]["warnings"]:
                    self.notes.append(f"Matchering on {track.stem}: {warning}")
            elif tool == "ffmpeg loudnorm":
                lra = input_row.extra.get("lra", float("nan"))
                row.seconds, row.extra["loudnorm"] = self.loudnorm(track, output, lra)
            self.measure(row, output)
        except ToolError as e:
            self.failed(row, e)
        finally:
            if not self.args.keep_outputs:
                for path in (output, output.with_suffix(".stats.json")):
                    path.unlink(missing_ok=True)
        return row

    def run(self) -> int:
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self.load_start = load_average()
        self.preflight()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.out.exists():
            shutil.rmtree(self.out)
        tracks = self.write_corpus()
        for track in tracks:
            if track.stem == REFERENCE:
                continue
            input_row = Row("input", track.stem, track_seconds=wav_seconds(track))
            try:
                self.measure(input_row, track)
            except ToolError as e:
                self.failed(input_row, e)
            self.rows.append(input_row)
            self.print_row(input_row)
            for tool in TOOLS[1:]:
                row = self.run_one(tool, track, input_row)
                self.rows.append(row)
                self.print_row(row)
        self.load_end = load_average()
        return self.finish()

    def failed(self, row: Row, error: ToolError) -> None:
        """Marks the row failed and says why at once, stderr tail included."""
        row.status = "failed"
        row.note = error.message if error.tool == row.tool else f"{error.tool}: {error.message}"
        if error.last_line():
            row.note += f" ({error.last_line()})"
        self.failures.append((row, error))
        print(f"FAILED {row.tool} on {row.track}: {error.report()}", file=sys.stderr, flush=True)

    @staticmethod
    def print_row(row: Row) -> None:
        if row.status == "ok":
            time_part = (
                "" if row.seconds is None else f" {row.seconds:7.2f} s {fmt_rtf(row.rtf):>6}"
            )
            print(
                f"  {row.track:<11} {row.tool:<16}{time_part} {fmt(row.lufs, 1):>6} LUFS"
                f" {fmt(row.true_peak_dbtp, 1):>6} dBTP"
                f" spectral error {fmt(row.spectral_error_db, 2)} dB",
                flush=True,
            )
        else:
            print(f"  {row.track:<11} {row.tool:<16} {row.status}: {row.note}", flush=True)

    def finish(self) -> int:
        args = self.args
        by_key = {(r.tool, r.track): r for r in self.rows}
        checks = [
            check_targets(
                r,
                by_key.get(("matchering", r.track)),
                args.target_lufs,
                args.ceiling,
                args.tolerance,
            )
            for r in self.rows
            if r.tool in OUR_TOOLS
        ]
        failed_checks = [c for c in checks if c.passed is False]
        passed = not failed_checks and not self.failures
        section = self.section(checks, passed)
        print()
        print(section)
        (self.workdir / "results.json").write_text(
            json.dumps(
                {
                    "rows": [asdict(r) | {"rtf": r.rtf} for r in self.rows],
                    "checks": [asdict(c) for c in checks],
                },
                indent=2,
            )
            + "\n"
        )
        if args.doc:
            doc = Path(args.doc)
            try:
                updated = replace_between_markers(doc.read_text(encoding="utf-8"), section)
            except (OSError, ValueError) as e:
                print(f"error: cannot write the table into {doc}: {e}", file=sys.stderr)
                return 1
            fd, tmp = tempfile.mkstemp(dir=doc.parent, prefix=".bench-mastering.")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(updated)
            os.replace(tmp, doc)
            print(f"\ntable written to {doc} (between the bench-mastering markers)")
        if self.failures:
            print(f"\n{len(self.failures)} tool run(s) failed (stderr above):", file=sys.stderr)
            for row, _ in self.failures:
                print(f"- {row.tool} on {row.track}: {row.note}", file=sys.stderr)
        if failed_checks:
            print(f"\n{len(failed_checks)} target check(s) failed:", file=sys.stderr)
            for c in failed_checks:
                print(
                    f"- {c.tool} on {c.track}: loudness {c.loudness}, true peak "
                    f"{c.true_peak}, spectral error {c.spectral}",
                    file=sys.stderr,
                )
        return 0 if passed else 1

    def section(self, checks: list[Check], passed: bool) -> str:
        args = self.args
        seconds = args.seconds
        command = "make bench-mastering" + ("" if seconds == 180 else f" SECONDS={seconds}")
        date = self.started.strftime("%Y-%m-%d %H:%M UTC")
        cores = os.cpu_count() or 0
        gpu_runs = [r for r in self.rows if r.tool == "sonicforge gpu"]
        adapter = self.adapter_line or ("none (every GPU run failed)" if gpu_runs else "not tried")
        n_tracks = len({r.track for r in self.rows})
        outcome = "**passed**, every target" if passed else "**failed**"
        if not passed:
            reasons = []
            failed_checks = [c for c in checks if c.passed is False]
            if failed_checks:
                reasons.append(f"{len(failed_checks)} of {len(checks)} target checks failed")
            if self.failures:
                reasons.append(f"{len(self.failures)} tool run(s) failed")
            outcome += " (" + "; ".join(reasons) + ")"
        lines = [
            "## Mastering side by side: SonicForge CPU and GPU, Matchering 2.0, ffmpeg loudnorm",
            "",
            (
                f"Command: `{command}` (that is `scripts/bench-mastering.sh {seconds}`, which"
                " installs what is missing, makes `.venv-mastering/` with Matchering"
                f" {MATCHERING_VERSION}, and runs `scripts/bench_mastering.py`). Date: {date}."
                f" Machine: {cores} cores, {cpu_model()}, load average {self.load_start} at the"
                f" start and {self.load_end} at the end. GPU adapter: {adapter}."
            ),
            "",
            (
                f"Corpus: `sonicforge mastering-corpus --seconds {seconds}`, {n_tracks} tracks of"
                f" {seconds} s, 48 kHz stereo 32-bit float, mastered towards its balanced"
                " `reference.wav`"
                f" to {args.target_lufs:g} LUFS with a {args.ceiling:.1f} dBTP ceiling. Tools:"
                " `sonicforge master --backend cpu|gpu --reference reference.wav` (one process per"
                f" track); {self.matchering_versions} with the track as target and reference.wav"
                " as reference, internal rate 48 kHz, 32-bit float output, default limiter;"
                f" ffmpeg {self.ffmpeg_version} two-pass `loudnorm` (I={args.target_lufs:g},"
                f" TP={args.ceiling:g}, LRA 7 or the input's range if wider; the second pass"
                " applies the first pass's measured_* values with linear=true, output"
                " resampled to 48 kHz)."
            ),
            "",
            (
                "Measured independently: integrated loudness and true peak by ffmpeg's"
                " `ebur128=peak=true` summary (one decimal); spectral error by `sonicforge"
                " spectral-error` against reference.wav (RMS dB difference over the 31"
                " third-octave bands, 20 Hz-20 kHz, at equal power). Time is the wall time of"
                " each tool's processes on one track, process start and file I/O included (both"
                " passes for loudnorm); real-time factor = track seconds / wall seconds."
            ),
            "",
            results_table(self.rows),
            "",
            "Targets of issue 4 for our rows:",
            "",
            checks_table(checks, args.target_lufs, args.ceiling, args.tolerance),
            "",
            f"Outcome: {outcome}.",
        ]
        notes = list(self.notes)
        modes = [
            f"{r.track} {r.extra['loudnorm']['normalization_type']}"
            for r in self.rows
            if r.tool == "ffmpeg loudnorm" and "loudnorm" in r.extra
        ]
        if modes:
            notes.append(
                "loudnorm falls back from linear to dynamic mode when the linear gain would"
                " break the true-peak or range target; mode per track: " + ", ".join(modes)
            )
        chain = []
        for tool in OUR_TOOLS:
            times = [
                f"{r.track} {r.extra['engine']['seconds']:.2f} s"
                f" ({r.track_seconds / r.extra['engine']['seconds']:.0f}x)"
                for r in self.rows
                if r.tool == tool
                and isinstance(r.extra.get("engine", {}).get("seconds"), (int, float))
                and r.extra["engine"]["seconds"] > 0
                and r.track_seconds
            ]
            if times:
                chain.append(f"{tool.split()[-1]}: " + ", ".join(times))
        if chain:
            notes.append(
                "sonicforge's chain alone (`seconds` of `--stats-json`: no process start, no"
                " file I/O, no reference analysis): " + "; ".join(chain)
            )
        for row, _ in self.failures:
            notes.append(f"{row.tool} on {row.track} failed: {row.note}")
        if notes:
            lines += ["", "Notes:", ""]
            lines += [
                textwrap.fill(
                    note, WIDTH, initial_indent="- ", subsequent_indent="  ", break_on_hyphens=False
                )
                for note in notes
            ]
        # Prose wrapped like the rest of the document; tables stay one row a line.
        return "\n".join(
            (
                line
                if line.startswith(("|", "- "))
                else textwrap.fill(line, WIDTH, break_on_hyphens=False)
            )
            for line in lines
        )


# ---------------------------------------------------------------------------------
# `matchering` subcommand: runs inside the virtualenv


def run_matchering(target: str, reference: str, output: str) -> int:
    import matchering as mg  # only in the virtualenv

    mg.log(
        warning_handler=lambda text: print(f"matchering warning: {text}", file=sys.stderr),
        info_handler=lambda text: print(f"matchering: {text}", file=sys.stderr),
    )
    started = time.perf_counter()
    mg.process(
        target=target,
        reference=reference,
        results=[mg.Result(output, subtype="FLOAT", use_limiter=True, normalize=True)],
        config=mg.Config(internal_sample_rate=SAMPLE_RATE),
    )
    print(json.dumps({"process_seconds": time.perf_counter() - started}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the benchmark")
    run.add_argument("--sonicforge", required=True, help="the sonicforge binary")
    run.add_argument("--python", required=True, help="the virtualenv's python, with Matchering")
    run.add_argument("--ffmpeg", default="ffmpeg")
    run.add_argument("--workdir", required=True, help="scratch directory (corpus, outputs)")
    run.add_argument("--seconds", type=int, default=180, help="length of each corpus track")
    run.add_argument("--doc", help="Markdown file whose bench-mastering section gets the table")
    run.add_argument("--target-lufs", type=float, default=-14.0)
    run.add_argument("--ceiling", type=float, default=-1.0)
    run.add_argument("--tolerance", type=float, default=0.5, help="LU around the target")
    run.add_argument("--keep-outputs", action="store_true", help="keep the mastered files")
    matchering = sub.add_parser("matchering", help="one Matchering run (in the virtualenv)")
    matchering.add_argument("target")
    matchering.add_argument("reference")
    matchering.add_argument("output")
    args = parser.parse_args(argv)

    if args.command == "matchering":
        return run_matchering(args.target, args.reference, args.output)
    try:
        return Bench(args).run()
    except ToolError as e:
        print(f"error: {e.report()}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
