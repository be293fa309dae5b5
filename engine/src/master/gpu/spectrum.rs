//! Host side of `stft_power.wgsl`: the long-term average power spectra of a batch.

use crate::master::kernels::{ANALYSIS_BINS, KernelError};

use super::GpuKernels;
use super::plan::{self, WORKGROUP, frame_count, plan_spectra};
use super::resources::{PendingRead, bind_group, wait};

/// See [`crate::master::kernels::SpectralKernels::average_power_spectra`].
pub(super) fn average_power_spectra(
    gpu: &mut GpuKernels,
    signals: &[&[f32]],
) -> Result<Vec<Vec<f32>>, KernelError> {
    for signal in signals {
        plan::check_len(signal.len())?;
    }
    let row_bytes = (ANALYSIS_BINS * 4) as u64;
    // Signals whose sums fit in one buffer go together.
    let per_group = (gpu.max_buffer / row_bytes).max(1) as usize;
    let mut spectra = Vec::with_capacity(signals.len());
    for group in signals.chunks(per_group) {
        let sums = sum_group(gpu, group)?;
        for (signal, row) in group.iter().zip(sums.chunks_exact(ANALYSIS_BINS)) {
            let frames = frame_count(signal.len()).max(1) as f32;
            spectra.push(row.iter().map(|&p| p / frames).collect());
        }
    }
    Ok(spectra)
}

/// The power summed over frames, `ANALYSIS_BINS` values per signal.
fn sum_group(gpu: &mut GpuKernels, signals: &[&[f32]]) -> Result<Vec<f32>, KernelError> {
    let lens: Vec<usize> = signals.iter().map(|s| s.len()).collect();
    let row_bytes = ANALYSIS_BINS * 4;
    let max_floats = (gpu.max_buffer / 4) as usize;
    let rounds = plan_spectra(&lens, max_floats, gpu.max_buffer as usize / row_bytes);
    let sums_bytes = (signals.len() * row_bytes) as u64;
    if rounds.is_empty() {
        return Ok(vec![0.0; signals.len() * ANALYSIS_BINS]);
    }

    let device = gpu.device.clone();
    let b = &mut gpu.buffers;
    let most =
        |f: &dyn Fn(&plan::SpectrumRound) -> usize| rounds.iter().map(f).max().unwrap_or(0) as u64;
    let input = b.input.ensure(&device, 4 * most(&|r| r.input_len));
    let items = b.items.ensure(&device, 16 * most(&|r| r.items.len()));
    let partials = b.partials.ensure(&device, 4 * most(&plan::partial_floats));
    let reduce = b.reduce.ensure(&device, 16 * most(&|r| r.reduce.len()));
    let sums = b.sums.ensure(&device, sums_bytes);
    let readback = b.readback[0].ensure(&device, sums_bytes);
    let group = bind_group(
        &device,
        "stft_power",
        &gpu.pipelines.stft_layout,
        &[
            gpu.window.as_entire_binding(),
            gpu.twiddles.as_entire_binding(),
            input.as_entire_binding(),
            items.as_entire_binding(),
            partials.as_entire_binding(),
            reduce.as_entire_binding(),
            sums.as_entire_binding(),
        ],
    );

    let mut previous = None;
    let last = rounds.len() - 1;
    for (r, round) in rounds.iter().enumerate() {
        for upload in &round.uploads {
            let samples = &signals[upload.signal][upload.range.clone()];
            gpu.queue.write_buffer(
                &input,
                (upload.offset * 4) as u64,
                bytemuck::cast_slice(samples),
            );
        }
        gpu.queue
            .write_buffer(&items, 0, bytemuck::cast_slice(&round.items));
        gpu.queue
            .write_buffer(&reduce, 0, bytemuck::cast_slice(&round.reduce));
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("average power spectra"),
        });
        if r == 0 {
            encoder.clear_buffer(&sums, 0, Some(sums_bytes));
        }
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("stft_power"),
                timestamp_writes: None,
            });
            pass.set_bind_group(0, &group, &[]);
            pass.set_pipeline(&gpu.pipelines.frame_power);
            pass.dispatch_workgroups(plan::to_u32(round.items.len()), 1, 1);
            pass.set_pipeline(&gpu.pipelines.reduce_rows);
            pass.dispatch_workgroups(
                plan::to_u32(ANALYSIS_BINS.div_ceil(WORKGROUP)),
                plan::to_u32(round.reduce.len()),
                1,
            );
        }
        if r == last {
            encoder.copy_buffer_to_buffer(&sums, 0, &readback, 0, sums_bytes);
        }
        let index = gpu.submit(encoder)?;
        // At most two rounds in flight: the next round's uploads wait in host memory.
        if let Some(earlier) = previous.replace(index) {
            wait(&device, earlier)?;
        }
    }
    let pending = PendingRead::request(readback, sums_bytes);
    if let Some(index) = previous {
        wait(&device, index)?;
    }
    gpu.check_errors()?;
    let mut out = Vec::new();
    pending.read(|floats| out.extend_from_slice(floats))?;
    Ok(out)
}
