//! The GPU backend of the spectral kernels: WGSL compute shaders (`shaders/`) run
//! through `wgpu` on any adapter it supports (Vulkan, Metal, DX12, GL with compute).
//!
//! | kernel | shaders | how |
//! |---|---|---|
//! | [`SpectralKernels::average_power_spectra`] | `stft_power.wgsl` | one workgroup per run of 8 frames: real 4096-point FFT in workgroup memory, power summed in registers; rows of partial sums added per signal in a fixed order |
//! | [`SpectralKernels::convolve`] | `overlap_save.wgsl`, `fft.wgsl`, `spectral_multiply.wgsl` | overlap-save with complex transforms that carry two blocks each (real filter), radix-2 Stockham passes in global memory |
//!
//! [`GpuKernels::new`] picks an adapter, compiles every shader once and keeps the
//! pipelines and buffers. A batch goes to the device in one submission when it fits
//! in [`GpuOptions::max_buffer_bytes`]; a larger one is cut into rounds of that size
//! (see `plan`), with at most two rounds in flight.

mod convolve;
mod plan;
mod resources;
mod spectrum;

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::master::kernels::{ANALYSIS_FFT, ConvolveJob, KernelError, SpectralKernels};
use plan::TWIDDLE_LEN;
use resources::{Scratch, params_entry, storage_entry};

/// Options of the GPU backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuOptions {
    /// The largest buffer one round of work may use, in bytes. Default 256 MiB;
    /// the device's limits (`max_storage_buffer_binding_size`, `max_buffer_size`) cap
    /// it and it is raised to at least 1 MiB. Device memory in use is a small
    /// multiple of it (two transform buffers plus inputs and outputs).
    pub max_buffer_bytes: u64,
}

impl Default for GpuOptions {
    fn default() -> Self {
        Self {
            max_buffer_bytes: 256 << 20,
        }
    }
}

/// The smallest buffer cap: one round must hold a few transforms of the longest size.
const MIN_BUFFER_BYTES: u64 = 1 << 20;

/// The adapter the kernels run on, for figures and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuAdapter {
    /// The adapter's name (for Mesa's software driver: `llvmpipe (LLVM ...)`).
    pub name: String,
    /// `vulkan`, `metal`, `dx12` or `gl`.
    pub backend: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu` or `Other`.
    pub device_type: String,
    /// Driver name and version, as the driver reports them (may be empty).
    pub driver: String,
}

impl GpuAdapter {
    fn new(info: &wgpu::AdapterInfo) -> Self {
        let driver = [info.driver.as_str(), info.driver_info.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            name: info.name.clone(),
            backend: info.backend.to_string(),
            device_type: format!("{:?}", info.device_type),
            driver,
        }
    }
}

impl fmt::Display for GpuAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, {}", self.name, self.backend, self.device_type)?;
        if !self.driver.is_empty() {
            write!(f, ", {}", self.driver)?;
        }
        write!(f, ")")
    }
}

/// The compiled kernels and their bind group layouts.
#[derive(Debug)]
struct Pipelines {
    stft_layout: wgpu::BindGroupLayout,
    frame_power: wgpu::ComputePipeline,
    reduce_rows: wgpu::ComputePipeline,
    fft_layout: wgpu::BindGroupLayout,
    stockham_pass: wgpu::ComputePipeline,
    multiply_layout: wgpu::BindGroupLayout,
    multiply: wgpu::ComputePipeline,
    overlap_layout: wgpu::BindGroupLayout,
    gather_blocks: wgpu::ComputePipeline,
    gather_taps: wgpu::ComputePipeline,
    scatter_blocks: wgpu::ComputePipeline,
}

/// Buffers kept between calls; they grow to the largest round seen (up to the cap).
#[derive(Debug)]
struct Buffers {
    input: Scratch,
    items: Scratch,
    partials: Scratch,
    reduce: Scratch,
    sums: Scratch,
    params: Scratch,
    segments: Scratch,
    slots: Scratch,
    filter_entries: Scratch,
    taps: Scratch,
    work_a: Scratch,
    work_b: Scratch,
    filters: Scratch,
    output: Scratch,
    readback: [Scratch; 2],
}

/// The spectral kernels on a GPU (see the module documentation).
#[derive(Debug)]
pub struct GpuKernels {
    adapter: GpuAdapter,
    device: wgpu::Device,
    queue: wgpu::Queue,
    /// Errors the device reported outside an error scope (validation, out of memory).
    errors: Arc<Mutex<Vec<String>>>,
    /// The effective buffer cap in bytes.
    max_buffer: u64,
    uniform_align: u32,
    pipelines: Pipelines,
    /// `e^(-2πik/TWIDDLE_LEN)` for `k < TWIDDLE_LEN / 2`.
    twiddles: wgpu::Buffer,
    /// The periodic Hann window of the analysis.
    window: wgpu::Buffer,
    buffers: Buffers,
}

impl GpuKernels {
    /// Picks the best adapter (discrete, then integrated, virtual and software GPUs;
    /// `WGPU_BACKEND` may restrict the backends), opens a device with its limits and
    /// compiles the kernels, with the default [`GpuOptions`].
    ///
    /// Fails with [`KernelError::Gpu`] when there is no adapter that can run compute
    /// shaders (on Linux without a GPU: install Mesa's Vulkan drivers with
    /// `scripts/install-deps.sh test`), or when the device or a shader fails.
    pub fn new() -> Result<Self, KernelError> {
        Self::with_options(GpuOptions::default())
    }

    /// As [`GpuKernels::new`], with `options`.
    pub fn with_options(options: GpuOptions) -> Result<Self, KernelError> {
        let instance = new_instance();
        let adapter = pick_adapter(&instance)?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("sonicforge mastering"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        }))
        .map_err(|e| KernelError::Gpu(format!("opening {}: {e}", info.name)))?;

        // Errors outside a scope are logged here and returned by the next call, instead
        // of wgpu's default handler, which panics.
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&errors);
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            if let Ok(mut errors) = sink.lock() {
                errors.push(error.to_string());
            }
        }));

        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipelines = Pipelines::new(&device);
        let twiddles = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("twiddles"),
            size: (TWIDDLE_LEN / 2 * 8) as u64,
            usage: resources::STORAGE_IN,
            mapped_at_creation: false,
        });
        let window = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("hann window"),
            size: (ANALYSIS_FFT * 4) as u64,
            usage: resources::STORAGE_IN,
            mapped_at_creation: false,
        });
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(KernelError::Gpu(format!(
                "compiling the kernels on {}: {error}",
                info.name
            )));
        }
        queue.write_buffer(&twiddles, 0, bytemuck::cast_slice(&twiddle_table()));
        queue.write_buffer(&window, 0, bytemuck::cast_slice(&hann_window()));

        let max_buffer = options
            .max_buffer_bytes
            .min(limits.max_storage_buffer_binding_size)
            .min(limits.max_buffer_size)
            .min(u64::from(u32::MAX))
            .max(MIN_BUFFER_BYTES)
            / 256
            * 256;
        Ok(Self {
            adapter: GpuAdapter::new(&info),
            device,
            queue,
            errors,
            max_buffer,
            uniform_align: limits.min_uniform_buffer_offset_alignment,
            pipelines,
            twiddles,
            window,
            buffers: Buffers::new(),
        })
    }

    /// The adapter in use.
    pub fn adapter(&self) -> &GpuAdapter {
        &self.adapter
    }

    /// The effective cap on one buffer, in bytes (see [`GpuOptions::max_buffer_bytes`]).
    pub fn max_buffer_bytes(&self) -> u64 {
        self.max_buffer
    }

    /// Submits `encoder` and returns its index, or the first error the device
    /// reported since the last check.
    fn submit(&self, encoder: wgpu::CommandEncoder) -> Result<wgpu::SubmissionIndex, KernelError> {
        let index = self.queue.submit([encoder.finish()]);
        self.check_errors()?;
        Ok(index)
    }

    /// The errors the device reported, if any, as one [`KernelError::Gpu`].
    fn check_errors(&self) -> Result<(), KernelError> {
        let reported: Vec<String> = match self.errors.lock() {
            Ok(mut errors) => errors.drain(..).collect(),
            Err(_) => vec!["the error log was poisoned".into()],
        };
        if reported.is_empty() {
            Ok(())
        } else {
            Err(KernelError::Gpu(reported.join("; ")))
        }
    }
}

impl SpectralKernels for GpuKernels {
    fn name(&self) -> &'static str {
        "gpu"
    }

    fn average_power_spectra(&mut self, signals: &[&[f32]]) -> Result<Vec<Vec<f32>>, KernelError> {
        spectrum::average_power_spectra(self, signals)
    }

    fn convolve(&mut self, jobs: &mut [ConvolveJob<'_>]) -> Result<(), KernelError> {
        convolve::convolve(self, jobs)
    }
}

impl Buffers {
    fn new() -> Self {
        use resources::{READBACK, STORAGE_IN, STORAGE_OUT};
        Self {
            input: Scratch::new("input", STORAGE_IN),
            items: Scratch::new("frame items", STORAGE_IN),
            partials: Scratch::new("partial sums", wgpu::BufferUsages::STORAGE),
            reduce: Scratch::new("reduce items", STORAGE_IN),
            sums: Scratch::new("spectrum sums", STORAGE_OUT),
            params: Scratch::new(
                "params",
                wgpu::BufferUsages::UNIFORM.union(wgpu::BufferUsages::COPY_DST),
            ),
            segments: Scratch::new("segments", STORAGE_IN),
            slots: Scratch::new("slots", STORAGE_IN),
            filter_entries: Scratch::new("filter entries", STORAGE_IN),
            taps: Scratch::new("taps", STORAGE_IN),
            work_a: Scratch::new("transforms a", STORAGE_OUT),
            work_b: Scratch::new("transforms b", STORAGE_OUT),
            filters: Scratch::new("filter spectra", STORAGE_OUT),
            output: Scratch::new("output", STORAGE_OUT),
            readback: [
                Scratch::new("readback 0", READBACK),
                Scratch::new("readback 1", READBACK),
            ],
        }
    }
}

impl Pipelines {
    fn new(device: &wgpu::Device) -> Self {
        let module = |label: &str, source: &'static str| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            })
        };
        let stft = module(
            "stft_power.wgsl",
            include_str!("../../../../shaders/stft_power.wgsl"),
        );
        let fft = module("fft.wgsl", include_str!("../../../../shaders/fft.wgsl"));
        let multiply = module(
            "spectral_multiply.wgsl",
            include_str!("../../../../shaders/spectral_multiply.wgsl"),
        );
        let overlap = module(
            "overlap_save.wgsl",
            include_str!("../../../../shaders/overlap_save.wgsl"),
        );

        let layout = |label: &str, entries: &[wgpu::BindGroupLayoutEntry]| {
            device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(label),
                entries,
            })
        };
        let stft_layout = layout(
            "stft_power",
            &[
                storage_entry(0, true),
                storage_entry(1, true),
                storage_entry(2, true),
                storage_entry(3, true),
                storage_entry(4, false),
                storage_entry(5, true),
                storage_entry(6, false),
            ],
        );
        let fft_layout = layout(
            "fft",
            &[
                params_entry(0),
                storage_entry(1, true),
                storage_entry(2, true),
                storage_entry(3, false),
            ],
        );
        let multiply_layout = layout(
            "spectral_multiply",
            &[
                params_entry(0),
                storage_entry(1, true),
                storage_entry(2, true),
                storage_entry(3, false),
            ],
        );
        let overlap_layout = layout(
            "overlap_save",
            &[
                params_entry(0),
                storage_entry(1, true),
                storage_entry(2, true),
                storage_entry(3, true),
                storage_entry(4, true),
                storage_entry(5, true),
                storage_entry(6, false),
                storage_entry(7, false),
            ],
        );

        let pipeline =
            |bind_layout: &wgpu::BindGroupLayout, module: &wgpu::ShaderModule, entry: &str| {
                let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some(entry),
                    bind_group_layouts: &[Some(bind_layout)],
                    immediate_size: 0,
                });
                device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry),
                    layout: Some(&layout),
                    module,
                    entry_point: Some(entry),
                    compilation_options: wgpu::PipelineCompilationOptions::default(),
                    cache: None,
                })
            };
        Self {
            frame_power: pipeline(&stft_layout, &stft, "frame_power"),
            reduce_rows: pipeline(&stft_layout, &stft, "reduce_rows"),
            stockham_pass: pipeline(&fft_layout, &fft, "stockham_pass"),
            multiply: pipeline(&multiply_layout, &multiply, "multiply"),
            gather_blocks: pipeline(&overlap_layout, &overlap, "gather_blocks"),
            gather_taps: pipeline(&overlap_layout, &overlap, "gather_taps"),
            scatter_blocks: pipeline(&overlap_layout, &overlap, "scatter_blocks"),
            stft_layout,
            fft_layout,
            multiply_layout,
            overlap_layout,
        }
    }
}

/// The adapter [`GpuKernels::new`] would pick, without opening a device or compiling
/// anything: whether the GPU path can run here at all (for `auto` backend choice and
/// for tests that need an adapter). Fails with [`KernelError::Gpu`] saying why when
/// there is none.
pub fn find_adapter() -> Result<GpuAdapter, KernelError> {
    let instance = new_instance();
    pick_adapter(&instance).map(|adapter| GpuAdapter::new(&adapter.get_info()))
}

fn new_instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// The most suitable adapter: it must run compute shaders with the workgroup memory
/// and bindings the kernels use; discrete GPUs first, software drivers last. The
/// native backends (Vulkan, Metal, DX12) are searched first and GL only when they
/// have nothing; `WGPU_BACKEND` (e.g. `vulkan`, `gl`) overrides the choice.
fn pick_adapter(instance: &wgpu::Instance) -> Result<wgpu::Adapter, KernelError> {
    let searches = match wgpu::Backends::from_env() {
        Some(backends) => vec![backends],
        None => vec![wgpu::Backends::PRIMARY, wgpu::Backends::SECONDARY],
    };
    let mut rejected = Vec::new();
    for backends in searches {
        let adapters = pollster::block_on(instance.enumerate_adapters(backends));
        let mut best: Option<(u8, wgpu::Adapter)> = None;
        for adapter in adapters {
            let info = adapter.get_info();
            if let Some(why) = unsuitable(&adapter) {
                rejected.push(format!("{} ({}): {why}", info.name, info.backend));
                continue;
            }
            let rank = rank(&info);
            if best.as_ref().is_none_or(|(r, _)| rank > *r) {
                best = Some((rank, adapter));
            }
        }
        if let Some((_, adapter)) = best {
            return Ok(adapter);
        }
    }
    if rejected.is_empty() {
        Err(KernelError::Gpu(
            "no GPU adapter found (on Linux without a GPU, install Mesa's Vulkan driver: \
             scripts/install-deps.sh test)"
                .into(),
        ))
    } else {
        Err(KernelError::Gpu(format!(
            "no suitable GPU adapter: {}",
            rejected.join("; ")
        )))
    }
}

/// Why `adapter` cannot run the kernels, if it cannot.
fn unsuitable(adapter: &wgpu::Adapter) -> Option<String> {
    let caps = adapter.get_downlevel_capabilities();
    if !caps.flags.contains(wgpu::DownlevelFlags::COMPUTE_SHADERS) {
        return Some("no compute shaders".into());
    }
    let limits = adapter.limits();
    let needs: [(&str, u64, u64); 5] = [
        (
            "max_compute_workgroup_storage_size",
            limits.max_compute_workgroup_storage_size.into(),
            16384,
        ),
        (
            "max_compute_invocations_per_workgroup",
            limits.max_compute_invocations_per_workgroup.into(),
            256,
        ),
        (
            "max_compute_workgroup_size_x",
            limits.max_compute_workgroup_size_x.into(),
            256,
        ),
        (
            "max_storage_buffers_per_shader_stage",
            limits.max_storage_buffers_per_shader_stage.into(),
            7,
        ),
        (
            "max_dynamic_uniform_buffers_per_pipeline_layout",
            limits
                .max_dynamic_uniform_buffers_per_pipeline_layout
                .into(),
            1,
        ),
    ];
    needs
        .iter()
        .find(|(_, have, need)| have < need)
        .map(|(name, have, need)| format!("{name} is {have}, the kernels need {need}"))
}

/// Preference among suitable adapters: device type first, then native backends over GL.
fn rank(info: &wgpu::AdapterInfo) -> u8 {
    let device = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 4,
        wgpu::DeviceType::IntegratedGpu => 3,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 1,
        wgpu::DeviceType::Other => 0,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 1,
        _ => 0,
    };
    device * 2 + backend
}

/// `e^(-2πik/TWIDDLE_LEN)` for `k < TWIDDLE_LEN / 2`, as (re, im) pairs, computed in f64.
fn twiddle_table() -> Vec<f32> {
    (0..TWIDDLE_LEN / 2)
        .flat_map(|k| {
            let angle = -2.0 * std::f64::consts::PI * k as f64 / TWIDDLE_LEN as f64;
            [angle.cos() as f32, angle.sin() as f32]
        })
        .collect()
}

/// The periodic Hann window `0.5 − 0.5·cos(2πn/N)` of the analysis, computed in f64.
fn hann_window() -> Vec<f32> {
    (0..ANALYSIS_FFT)
        .map(|n| {
            (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / ANALYSIS_FFT as f64).cos()) as f32
        })
        .collect()
}
