//! Host side of the overlap-save convolution: `overlap_save.wgsl`, `fft.wgsl` and
//! `spectral_multiply.wgsl`.

use crate::master::kernels::{ConvolveJob, KernelError};

use super::GpuKernels;
use super::plan::{
    self, ConvolveRound, FilterEntry, MAX_GROUPS_PER_DIMENSION, TWIDDLE_LEN, WORKGROUP,
    convolve_fft_len, plan_convolution,
};
use super::resources::{ParamArena, PendingRead, bind_group, params_resource, wait};

/// See [`crate::master::kernels::SpectralKernels::convolve`].
pub(super) fn convolve(
    gpu: &mut GpuKernels,
    jobs: &mut [ConvolveJob<'_>],
) -> Result<(), KernelError> {
    for job in jobs.iter() {
        job.check()?;
        plan::check_len(job.input.len())?;
    }
    let max_taps = jobs
        .iter()
        .filter(|j| !j.input.is_empty())
        .map(|j| j.taps.len())
        .max();
    let Some(max_taps) = max_taps else {
        return Ok(());
    };
    let n = convolve_fft_len(max_taps);
    let slot_bytes = (n * 8) as u64;
    // Filters whose spectra fit in one buffer go together.
    let per_group = ((gpu.max_buffer / slot_bytes) as usize).clamp(1, MAX_GROUPS_PER_DIMENSION);
    for group in jobs.chunks_mut(per_group) {
        convolve_group(gpu, group, n)?;
    }
    Ok(())
}

/// The dynamic offsets of every parameter block one call uses.
struct Params {
    forward: Vec<u32>,
    inverse: Vec<u32>,
    overlap: u32,
    multiply: u32,
}

impl Params {
    fn new(arena: &mut ParamArena, n: usize) -> Self {
        let n32 = plan::to_u32(n);
        let passes = |arena: &mut ParamArena, conj: f32| {
            let mut offsets = Vec::new();
            let mut span = 1;
            while span < n {
                let step = plan::to_u32(TWIDDLE_LEN / (2 * span));
                offsets.push(arena.push([n32, plan::to_u32(span), step, conj.to_bits()]));
                span *= 2;
            }
            offsets
        };
        let forward = passes(arena, 1.0);
        let inverse = passes(arena, -1.0);
        let overlap = arena.push([n32, 0, 0, 0]);
        let multiply = arena.push([n32, (1.0 / n as f32).to_bits(), 0, 0]);
        Self {
            forward,
            inverse,
            overlap,
            multiply,
        }
    }
}

/// Bind groups of the FFT passes: `ab` reads buffer A and writes B, `ba` the reverse.
struct FftGroups {
    ab: wgpu::BindGroup,
    ba: wgpu::BindGroup,
}

/// Encodes the passes at `offsets` over `slots` transforms of `n` points, starting
/// from buffer A when `in_a`; returns whether the result is in buffer A.
fn encode_fft(
    pass: &mut wgpu::ComputePass<'_>,
    gpu: &GpuKernels,
    groups: &FftGroups,
    offsets: &[u32],
    n: usize,
    slots: usize,
    mut in_a: bool,
) -> bool {
    pass.set_pipeline(&gpu.pipelines.stockham_pass);
    for &offset in offsets {
        pass.set_bind_group(0, if in_a { &groups.ab } else { &groups.ba }, &[offset]);
        pass.dispatch_workgroups(plan::to_u32(n / 2 / WORKGROUP), plan::to_u32(slots), 1);
        in_a = !in_a;
    }
    in_a
}

fn convolve_group(
    gpu: &mut GpuKernels,
    jobs: &mut [ConvolveJob<'_>],
    n: usize,
) -> Result<(), KernelError> {
    let lens: Vec<usize> = jobs.iter().map(|j| j.input.len()).collect();
    let taps_lens: Vec<usize> = jobs.iter().map(|j| j.taps.len()).collect();
    let slot_bytes = (n * 8) as u64;
    let max_slots = (gpu.max_buffer / slot_bytes) as usize;
    let rounds = plan_convolution(&lens, &taps_lens, n, max_slots);
    if rounds.is_empty() {
        return Ok(());
    }

    let mut all_taps = Vec::new();
    let mut entries = Vec::with_capacity(jobs.len());
    for job in jobs.iter() {
        entries.push(FilterEntry {
            taps_off: plan::to_u32(all_taps.len()),
            taps_len: plan::to_u32(job.taps.len()),
        });
        all_taps.extend_from_slice(job.taps);
    }
    let mut arena = ParamArena::new(gpu.uniform_align);
    let params = Params::new(&mut arena, n);

    let device = gpu.device.clone();
    let most = |f: &dyn Fn(&ConvolveRound) -> usize| rounds.iter().map(f).max().unwrap_or(0) as u64;
    let work_bytes = slot_bytes * most(&|r| r.slots.len()).max(jobs.len() as u64);
    let output_bytes = 4 * most(&|r| r.output_len);
    let b = &mut gpu.buffers;
    let params_buffer = b.params.ensure(&device, arena.bytes().len() as u64);
    let segments = b.segments.ensure(&device, 32 * most(&|r| r.segments.len()));
    let slots = b.slots.ensure(&device, 16 * most(&|r| r.slots.len()));
    let filter_entries = b.filter_entries.ensure(&device, 8 * jobs.len() as u64);
    let taps = b.taps.ensure(&device, 4 * all_taps.len() as u64);
    let input = b.input.ensure(&device, 4 * most(&|r| r.input_len));
    let work_a = b.work_a.ensure(&device, work_bytes);
    let work_b = b.work_b.ensure(&device, work_bytes);
    let filters = b.filters.ensure(&device, slot_bytes * jobs.len() as u64);
    let output = b.output.ensure(&device, output_bytes);
    let readback = [
        b.readback[0].ensure(&device, output_bytes),
        b.readback[1].ensure(&device, output_bytes),
    ];

    let p = &gpu.pipelines;
    let fft = FftGroups {
        ab: bind_group(
            &device,
            "fft a to b",
            &p.fft_layout,
            &[
                params_resource(&params_buffer),
                gpu.twiddles.as_entire_binding(),
                work_a.as_entire_binding(),
                work_b.as_entire_binding(),
            ],
        ),
        ba: bind_group(
            &device,
            "fft b to a",
            &p.fft_layout,
            &[
                params_resource(&params_buffer),
                gpu.twiddles.as_entire_binding(),
                work_b.as_entire_binding(),
                work_a.as_entire_binding(),
            ],
        ),
    };
    // The forward transform ends in A after an even number of passes.
    let spectra_in_a = params.forward.len().is_multiple_of(2);
    let multiply = bind_group(
        &device,
        "spectral_multiply",
        &p.multiply_layout,
        &[
            params_resource(&params_buffer),
            slots.as_entire_binding(),
            filters.as_entire_binding(),
            if spectra_in_a {
                work_a.as_entire_binding()
            } else {
                work_b.as_entire_binding()
            },
        ],
    );
    // Both transforms together take an even number of passes: the result is in A.
    let overlap = bind_group(
        &device,
        "overlap_save",
        &p.overlap_layout,
        &[
            params_resource(&params_buffer),
            segments.as_entire_binding(),
            slots.as_entire_binding(),
            filter_entries.as_entire_binding(),
            input.as_entire_binding(),
            taps.as_entire_binding(),
            work_a.as_entire_binding(),
            output.as_entire_binding(),
        ],
    );

    gpu.queue.write_buffer(&params_buffer, 0, arena.bytes());
    gpu.queue
        .write_buffer(&filter_entries, 0, bytemuck::cast_slice(&entries));
    gpu.queue
        .write_buffer(&taps, 0, bytemuck::cast_slice(&all_taps));

    let blocks_x = plan::to_u32(n / WORKGROUP);
    let mut in_flight: Option<(wgpu::SubmissionIndex, PendingRead, usize)> = None;
    for (r, round) in rounds.iter().enumerate() {
        for upload in &round.uploads {
            let samples = &jobs[upload.signal].input[upload.range.clone()];
            gpu.queue.write_buffer(
                &input,
                (upload.offset * 4) as u64,
                bytemuck::cast_slice(samples),
            );
        }
        gpu.queue
            .write_buffer(&segments, 0, bytemuck::cast_slice(&round.segments));
        gpu.queue
            .write_buffer(&slots, 0, bytemuck::cast_slice(&round.slots));

        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("convolve"),
        });
        if r == 0 {
            // The filters' spectra, once per call.
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("filter spectra"),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&p.gather_taps);
                pass.set_bind_group(0, &overlap, &[params.overlap]);
                pass.dispatch_workgroups(blocks_x, plan::to_u32(jobs.len()), 1);
                encode_fft(&mut pass, gpu, &fft, &params.forward, n, jobs.len(), true);
            }
            let source = if spectra_in_a { &work_a } else { &work_b };
            encoder.copy_buffer_to_buffer(source, 0, &filters, 0, slot_bytes * jobs.len() as u64);
        }
        let count = round.slots.len();
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("overlap-save"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&p.gather_blocks);
            pass.set_bind_group(0, &overlap, &[params.overlap]);
            pass.dispatch_workgroups(blocks_x, plan::to_u32(count), 1);
            let in_a = encode_fft(&mut pass, gpu, &fft, &params.forward, n, count, true);
            pass.set_pipeline(&p.multiply);
            pass.set_bind_group(0, &multiply, &[params.multiply]);
            pass.dispatch_workgroups(blocks_x, plan::to_u32(count), 1);
            encode_fft(&mut pass, gpu, &fft, &params.inverse, n, count, in_a);
            pass.set_pipeline(&p.scatter_blocks);
            pass.set_bind_group(0, &overlap, &[params.overlap]);
            pass.dispatch_workgroups(blocks_x, plan::to_u32(count), 1);
        }
        let bytes = (round.output_len * 4) as u64;
        let target = &readback[r % 2];
        encoder.copy_buffer_to_buffer(&output, 0, target, 0, bytes);
        let index = gpu.submit(encoder)?;
        let pending = PendingRead::request(target.clone(), bytes);
        // Read the previous round while this one runs.
        if let Some((earlier, read, earlier_round)) = in_flight.replace((index, pending, r)) {
            wait(&device, earlier)?;
            gpu.check_errors()?;
            read.read(|floats| deliver(jobs, &rounds[earlier_round], floats))?;
        }
    }
    if let Some((index, read, r)) = in_flight {
        wait(&device, index)?;
        gpu.check_errors()?;
        read.read(|floats| deliver(jobs, &rounds[r], floats))?;
    }
    Ok(())
}

/// Copies a round's output into the jobs' output slices.
fn deliver(jobs: &mut [ConvolveJob<'_>], round: &ConvolveRound, floats: &[f32]) {
    for download in &round.downloads {
        let from = &floats[download.offset..download.offset + download.range.len()];
        jobs[download.signal].output[download.range.clone()].copy_from_slice(from);
    }
}
