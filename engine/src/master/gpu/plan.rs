//! How a batch is cut into rounds of GPU work: pure arithmetic on lengths, shared by
//! the host code and tested without an adapter.
//!
//! A round is what fits in the reusable buffers at once (their size is capped by
//! [`super::GpuOptions::max_buffer_bytes`] and the device's limits); a batch that fits
//! is one round, so one submission.

use std::ops::Range;

use bytemuck::{Pod, Zeroable};

use crate::master::kernels::{ANALYSIS_BINS, ANALYSIS_FFT, ANALYSIS_HOP};

/// Frames one `frame_power` workgroup transforms and sums (one row of partial sums).
pub(super) const FRAMES_PER_ITEM: usize = 8;
/// Length of the twiddle table (`e^(-2πik/TWIDDLE_LEN)`, `k < TWIDDLE_LEN / 2`); also
/// the longest convolution transform. Must match `TWIDDLE_LEN` in `stft_power.wgsl`.
pub(super) const TWIDDLE_LEN: usize = 32768;
/// Shortest convolution transform: one 256-thread workgroup of radix-2 butterflies.
pub(super) const MIN_CONVOLVE_FFT: usize = 512;
/// Threads per workgroup in every shader.
pub(super) const WORKGROUP: usize = 256;
/// Most workgroups along one dispatch dimension (the WebGPU minimum limit).
pub(super) const MAX_GROUPS_PER_DIMENSION: usize = 65535;

/// The analysis frames of a signal of `len` samples: frames start every
/// [`ANALYSIS_HOP`] samples until one reaches the end (zero-padded); a signal shorter
/// than one frame is one frame, an empty one has none.
pub(super) fn frame_count(len: usize) -> usize {
    if len == 0 {
        0
    } else if len <= ANALYSIS_FFT {
        1
    } else {
        1 + (len - ANALYSIS_FFT).div_ceil(ANALYSIS_HOP)
    }
}

/// Samples of one signal copied into a round's input (or out of its output) buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Transfer {
    /// Index of the signal (or job) in the batch.
    pub signal: usize,
    /// Sample range within the signal.
    pub range: Range<usize>,
    /// Offset in the round's buffer, in samples.
    pub offset: usize,
}

/// One `frame_power` workgroup: up to [`FRAMES_PER_ITEM`] frames of one signal.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub(super) struct FrameItem {
    pub in_off: u32,
    pub avail: u32,
    pub frames: u32,
    pub row: u32,
}

/// Adds rows `first_row .. first_row + rows` of the partial sums to signal `signal`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub(super) struct ReduceItem {
    pub first_row: u32,
    pub rows: u32,
    pub signal: u32,
    pub pad: u32,
}

/// One round of the spectrum kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct SpectrumRound {
    pub uploads: Vec<Transfer>,
    pub items: Vec<FrameItem>,
    pub reduce: Vec<ReduceItem>,
    /// Samples of input the round uses.
    pub input_len: usize,
}

/// Cuts the analysis of signals of lengths `lens` into rounds of at most `max_input`
/// input samples and `max_rows` rows of partial sums. `max_input` must hold one item
/// (`(FRAMES_PER_ITEM - 1) * ANALYSIS_HOP + ANALYSIS_FFT` samples) and `max_rows`
/// must be at least 1; smaller values are raised to that.
pub(super) fn plan_spectra(
    lens: &[usize],
    max_input: usize,
    max_rows: usize,
) -> Vec<SpectrumRound> {
    let item_span = FRAMES_PER_ITEM * ANALYSIS_HOP;
    let max_input = max_input.max((FRAMES_PER_ITEM - 1) * ANALYSIS_HOP + ANALYSIS_FFT);
    let max_rows = max_rows.clamp(1, MAX_GROUPS_PER_DIMENSION);
    let mut rounds = Vec::new();
    let mut round = SpectrumRound::default();
    for (signal, &len) in lens.iter().enumerate() {
        let frames = frame_count(len);
        let items = frames.div_ceil(FRAMES_PER_ITEM);
        // The item's frames, and one past the last sample they read.
        let item_frames = |i: usize| (frames - i * FRAMES_PER_ITEM).min(FRAMES_PER_ITEM);
        let item_end = |i: usize| {
            let last_start = (i * FRAMES_PER_ITEM + item_frames(i) - 1) * ANALYSIS_HOP;
            (last_start + ANALYSIS_FFT).min(len)
        };
        let mut first = 0;
        while first < items {
            let start = first * item_span;
            let mut end_item = first;
            while end_item < items {
                let need = item_end(end_item) - start;
                let rows = round.items.len() + end_item - first + 1;
                if round.input_len + need > max_input || rows > max_rows {
                    break;
                }
                end_item += 1;
            }
            if end_item == first {
                // Nothing more fits: close the round (never empty here, by the clamps).
                rounds.push(std::mem::take(&mut round));
                continue;
            }
            let end = item_end(end_item - 1);
            let offset = round.input_len;
            let first_row = round.items.len();
            round.uploads.push(Transfer {
                signal,
                range: start..end,
                offset,
            });
            for i in first..end_item {
                let item_start = i * item_span;
                round.items.push(FrameItem {
                    in_off: to_u32(offset + item_start - start),
                    avail: to_u32(len - item_start),
                    frames: to_u32(item_frames(i)),
                    row: to_u32(round.items.len()),
                });
            }
            round.reduce.push(ReduceItem {
                first_row: to_u32(first_row),
                rows: to_u32(end_item - first),
                signal: to_u32(signal),
                pad: 0,
            });
            round.input_len += end - start;
            first = end_item;
        }
    }
    if !round.items.is_empty() {
        rounds.push(round);
    }
    rounds
}

/// Rows of partial sums a spectrum round writes (for sizing).
pub(super) fn partial_floats(round: &SpectrumRound) -> usize {
    round.items.len() * ANALYSIS_BINS
}

/// The transform length for a batch whose longest FIR has `max_taps` taps: about
/// four times the FIR, so that three quarters of each transform are valid output.
pub(super) fn convolve_fft_len(max_taps: usize) -> usize {
    (4 * max_taps)
        .next_power_of_two()
        .clamp(MIN_CONVOLVE_FFT, TWIDDLE_LEN)
}

/// The part of one signal a convolution round uploads and fills (`Segment` in
/// `overlap_save.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub(super) struct Segment {
    pub len: u32,
    pub in_lo: u32,
    pub in_off: u32,
    pub out_lo: u32,
    pub out_hi: u32,
    pub out_off: u32,
    pub taps: u32,
    pub block: u32,
}

/// One transform of a convolution round: one or two consecutive blocks of a signal.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub(super) struct Slot {
    pub segment: u32,
    pub start: u32,
    pub pair: u32,
    pub fir: u32,
}

/// Where a filter's taps are in the taps buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub(super) struct FilterEntry {
    pub taps_off: u32,
    pub taps_len: u32,
}

/// One round of the convolution kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct ConvolveRound {
    pub segments: Vec<Segment>,
    pub slots: Vec<Slot>,
    pub uploads: Vec<Transfer>,
    pub downloads: Vec<Transfer>,
    pub input_len: usize,
    pub output_len: usize,
}

/// Cuts convolutions of signals of lengths `lens` through FIRs of `taps[j]` taps (odd,
/// and shorter than `n`: the caller picks `n` with [`convolve_fft_len`]) into rounds
/// of at most `max_slots` transforms of `n` points. Job `j` uses filter `j`.
pub(super) fn plan_convolution(
    lens: &[usize],
    taps: &[usize],
    n: usize,
    max_slots: usize,
) -> Vec<ConvolveRound> {
    let max_slots = max_slots.clamp(1, MAX_GROUPS_PER_DIMENSION);
    let mut rounds = Vec::new();
    let mut round = ConvolveRound::default();
    for (job, (&len, &t)) in lens.iter().zip(taps).enumerate() {
        let block = n + 1 - t;
        let centre = (t - 1) / 2;
        let pairs = len.div_ceil(block).div_ceil(2);
        let blocks = len.div_ceil(block);
        let mut first = 0;
        while first < pairs {
            let room = max_slots - round.slots.len();
            if room == 0 {
                rounds.push(std::mem::take(&mut round));
                continue;
            }
            let end_pair = pairs.min(first + room);
            let out_lo = first * 2 * block;
            let out_hi = (end_pair * 2 * block).min(len);
            let in_lo = out_lo.saturating_sub(centre);
            let in_hi = (end_pair * 2 * block + centre).min(len);
            let segment = to_u32(round.segments.len());
            round.segments.push(Segment {
                len: to_u32(len),
                in_lo: to_u32(in_lo),
                in_off: to_u32(round.input_len),
                out_lo: to_u32(out_lo),
                out_hi: to_u32(out_hi),
                out_off: to_u32(round.output_len),
                taps: to_u32(t),
                block: to_u32(block),
            });
            for p in first..end_pair {
                round.slots.push(Slot {
                    segment,
                    start: to_u32(2 * p * block),
                    pair: if 2 * p + 1 < blocks { 2 } else { 1 },
                    fir: to_u32(job),
                });
            }
            round.uploads.push(Transfer {
                signal: job,
                range: in_lo..in_hi,
                offset: round.input_len,
            });
            round.downloads.push(Transfer {
                signal: job,
                range: out_lo..out_hi,
                offset: round.output_len,
            });
            round.input_len += in_hi - in_lo;
            round.output_len += out_hi - out_lo;
            first = end_pair;
        }
    }
    if !round.slots.is_empty() {
        rounds.push(round);
    }
    rounds
}

/// The longest signal the kernels take: sample indices are 32-bit in the shaders
/// (signed where a block reaches before the start). About 12 hours at 48 kHz.
pub(super) const MAX_SIGNAL_LEN: usize = i32::MAX as usize;

/// Refuses a signal longer than [`MAX_SIGNAL_LEN`].
pub(super) fn check_len(len: usize) -> Result<(), crate::master::kernels::KernelError> {
    if len > MAX_SIGNAL_LEN {
        return Err(crate::master::kernels::KernelError::Gpu(format!(
            "a signal of {len} samples: the GPU kernels take at most {MAX_SIGNAL_LEN}"
        )));
    }
    Ok(())
}

/// Converts an index that the caller's size caps keep far below 2³² (every buffer is
/// at most `u32::MAX` bytes, see `GpuOptions`).
pub(super) fn to_u32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cover_the_signal_with_one_zero_padded_last_frame() {
        assert_eq!(frame_count(0), 0);
        assert_eq!(frame_count(1), 1);
        assert_eq!(frame_count(4096), 1);
        assert_eq!(frame_count(4097), 2);
        assert_eq!(frame_count(4096 + 2048), 2);
        assert_eq!(frame_count(4096 + 2049), 3);
    }

    /// Every frame of every signal appears exactly once, reads only uploaded samples,
    /// and each round respects its caps.
    #[test]
    fn spectrum_rounds_cover_every_frame_within_caps() {
        let lens = [0, 1, 4096, 100_000, 48_000 * 30, 5000];
        for (max_input, max_rows) in [(usize::MAX, usize::MAX), (20_000, 3), (100_000, 1000)] {
            let rounds = plan_spectra(&lens, max_input, max_rows);
            let mut frames = vec![0usize; lens.len()];
            for round in &rounds {
                assert!(round.input_len <= max_input.max(18_432));
                assert!(round.items.len() <= max_rows.min(MAX_GROUPS_PER_DIMENSION));
                for (row, item) in round.items.iter().enumerate() {
                    assert_eq!(item.row as usize, row);
                }
                let mut covered = 0;
                for (upload, reduce) in round.uploads.iter().zip(&round.reduce) {
                    assert_eq!(reduce.signal as usize, upload.signal);
                    assert_eq!(reduce.first_row as usize, covered);
                    covered += reduce.rows as usize;
                    let len = lens[upload.signal];
                    for item in &round.items[reduce.first_row as usize..covered] {
                        frames[upload.signal] += item.frames as usize;
                        let first = upload.range.start + (item.in_off as usize - upload.offset);
                        assert_eq!(len - first, item.avail as usize);
                        // The last sample the item reads that lies in the signal.
                        let last = (first + (item.frames as usize - 1) * 2048 + 4096).min(len);
                        assert!(last <= upload.range.end);
                    }
                }
                assert_eq!(covered, round.items.len());
            }
            let expected: Vec<usize> = lens.iter().map(|&l| frame_count(l)).collect();
            assert_eq!(frames, expected);
        }
    }

    /// Every output sample is written by exactly one block, and every sample a block
    /// reads from the signal is uploaded.
    #[test]
    fn convolution_rounds_write_every_sample_once() {
        let lens = [0, 1, 511, 10_000, 48_000, 12_345];
        let taps = [1, 3, 31, 511, 101, 127];
        let n = convolve_fft_len(511);
        assert_eq!(n, 2048);
        for max_slots in [1, 2, 7, 1000] {
            let rounds = plan_convolution(&lens, &taps, n, max_slots);
            let mut written: Vec<Vec<u8>> = lens.iter().map(|&l| vec![0; l]).collect();
            for round in &rounds {
                assert!(round.slots.len() <= max_slots);
                for slot in &round.slots {
                    let seg = round.segments[slot.segment as usize];
                    let job = slot.fir as usize;
                    let c = (seg.taps as usize - 1) / 2;
                    for b in 0..slot.pair as usize {
                        let start = slot.start as usize + b * seg.block as usize;
                        let end = (start + seg.block as usize).min(seg.out_hi as usize);
                        for (i, count) in written[job].iter_mut().enumerate().take(end).skip(start)
                        {
                            *count += 1;
                            let lo = i.saturating_sub(c);
                            let hi = (i + c + 1).min(seg.len as usize);
                            assert!(lo >= seg.in_lo as usize);
                            let upload = &round.uploads[slot.segment as usize];
                            assert!(hi <= upload.range.end);
                        }
                    }
                }
                let out: usize = round.downloads.iter().map(|d| d.range.len()).sum();
                assert_eq!(out, round.output_len);
            }
            for w in &written {
                assert!(w.iter().all(|&x| x == 1));
            }
        }
    }
}
