//! Reusable buffers, bind group layouts and read-back for the GPU kernels.

use std::num::NonZeroU64;
use std::sync::mpsc;

use crate::master::kernels::KernelError;

/// Bytes of every kernel's uniform parameter block.
pub(super) const PARAMS_BYTES: u64 = 16;

/// A buffer that is kept between calls and only ever grows.
#[derive(Debug)]
pub(super) struct Scratch {
    label: &'static str,
    usage: wgpu::BufferUsages,
    buffer: Option<wgpu::Buffer>,
}

impl Scratch {
    pub(super) fn new(label: &'static str, usage: wgpu::BufferUsages) -> Self {
        Self {
            label,
            usage,
            buffer: None,
        }
    }

    /// A buffer of at least `bytes` (and at least 256) bytes, reallocated only when
    /// the current one is too small.
    pub(super) fn ensure(&mut self, device: &wgpu::Device, bytes: u64) -> wgpu::Buffer {
        let bytes = bytes.max(256).next_multiple_of(256);
        match &self.buffer {
            Some(buffer) if buffer.size() >= bytes => buffer.clone(),
            _ => {
                let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(self.label),
                    size: bytes,
                    usage: self.usage,
                    mapped_at_creation: false,
                });
                self.buffer = Some(buffer.clone());
                buffer
            }
        }
    }
}

/// Usage of a storage buffer the host writes into.
pub(super) const STORAGE_IN: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_DST);
/// Usage of a storage buffer the host reads back (through a copy).
pub(super) const STORAGE_OUT: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);
/// Usage of a buffer the host maps to read results.
pub(super) const READBACK: wgpu::BufferUsages =
    wgpu::BufferUsages::MAP_READ.union(wgpu::BufferUsages::COPY_DST);

/// A storage buffer entry of a compute bind group layout.
pub(super) fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

/// A uniform parameter block entry, bound at a dynamic offset per dispatch.
pub(super) fn params_entry(binding: u32) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: true,
            min_binding_size: NonZeroU64::new(PARAMS_BYTES),
        },
        count: None,
    }
}

/// The bind group resource of a parameter block (bound with a dynamic offset).
pub(super) fn params_resource(buffer: &wgpu::Buffer) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer,
        offset: 0,
        size: NonZeroU64::new(PARAMS_BYTES),
    })
}

/// Creates a bind group binding `resources` in order from binding 0.
pub(super) fn bind_group(
    device: &wgpu::Device,
    label: &str,
    layout: &wgpu::BindGroupLayout,
    resources: &[wgpu::BindingResource<'_>],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry<'_>> = resources
        .iter()
        .enumerate()
        .map(|(binding, resource)| wgpu::BindGroupEntry {
            binding: binding as u32,
            resource: resource.clone(),
        })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout,
        entries: &entries,
    })
}

/// Parameter blocks for one call, each at an offset the device accepts for dynamic
/// uniform bindings.
#[derive(Debug)]
pub(super) struct ParamArena {
    bytes: Vec<u8>,
    align: usize,
}

impl ParamArena {
    pub(super) fn new(align: u32) -> Self {
        Self {
            bytes: Vec::new(),
            align: (align as usize).max(PARAMS_BYTES as usize),
        }
    }

    /// Appends one parameter block and returns its dynamic offset.
    pub(super) fn push(&mut self, block: [u32; 4]) -> u32 {
        let offset = self.bytes.len().next_multiple_of(self.align);
        self.bytes.resize(offset, 0);
        self.bytes.extend_from_slice(bytemuck::cast_slice(&block));
        offset as u32
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Blocks until submission `index` has finished on the device.
pub(super) fn wait(device: &wgpu::Device, index: wgpu::SubmissionIndex) -> Result<(), KernelError> {
    device
        .poll(wgpu::PollType::Wait {
            submission_index: Some(index),
            timeout: None,
        })
        .map(|_| ())
        .map_err(|e| KernelError::Gpu(format!("waiting for the device: {e}")))
}

/// A read-back buffer whose mapping was requested after a submission.
#[derive(Debug)]
pub(super) struct PendingRead {
    buffer: wgpu::Buffer,
    bytes: u64,
    done: mpsc::Receiver<Result<(), wgpu::BufferAsyncError>>,
}

impl PendingRead {
    /// Requests the mapping of the first `bytes` of `buffer` (call after the
    /// submission that fills it).
    pub(super) fn request(buffer: wgpu::Buffer, bytes: u64) -> Self {
        let (tx, done) = mpsc::channel();
        if bytes > 0 {
            buffer.map_async(wgpu::MapMode::Read, 0..bytes, move |result| {
                // The receiver only goes away when the read was abandoned.
                let _ = tx.send(result);
            });
        }
        Self {
            buffer,
            bytes,
            done,
        }
    }

    /// Reads the mapped floats into `sink` (after waiting for the submission) and
    /// unmaps the buffer.
    pub(super) fn read(self, sink: impl FnOnce(&[f32])) -> Result<(), KernelError> {
        if self.bytes == 0 {
            sink(&[]);
            return Ok(());
        }
        match self.done.try_recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(KernelError::Gpu(format!("mapping results: {e}"))),
            Err(_) => {
                return Err(KernelError::Gpu(
                    "results were not mapped after the wait".into(),
                ));
            }
        }
        {
            let view = self
                .buffer
                .get_mapped_range(0..self.bytes)
                .map_err(|e| KernelError::Gpu(format!("reading results: {e}")))?;
            match bytemuck::try_cast_slice::<u8, f32>(&view) {
                Ok(floats) => sink(floats),
                Err(_) => {
                    let floats: Vec<f32> = view
                        .chunks_exact(4)
                        .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    sink(&floats);
                }
            }
        }
        self.buffer.unmap();
        Ok(())
    }
}
