//! The wgpu device behind a `wgpu:N` backend: discovery, memory, error
//! capture, tensor binding windows and kernel launches. The `Backend` trait
//! itself is implemented in `backend.rs`; each op's launch is in its own file.

use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use wgpu::util::DeviceExt;

use super::Discovered;
use super::pipelines::{Kernel, PipelineCache};
use crate::backend::DeviceInfo;
use crate::dtype::DType;
use crate::error::{Error, Result, Unsupported};
use crate::ops::OpKind;
use crate::tensor::{Buffer, Tensor};

/// What the kernels need from an adapter (within WebGPU's default compute
/// limits, which every conformant adapter meets): 1-D workgroups of up to
/// 256 invocations, 12 KiB of workgroup memory (the GEMM tiles), 7 storage
/// buffers (attention, gptq_matmul).
const NEEDED_INVOCATIONS: u32 = 256;
const NEEDED_WORKGROUP_SIZE_X: u32 = 256;
const NEEDED_WORKGROUP_STORAGE: u32 = 12288;
const NEEDED_STORAGE_BUFFERS: u32 = 7;

/// The memory behind a wgpu [`Buffer`].
pub(crate) struct WgpuMemory {
    pub(crate) buffer: wgpu::Buffer,
    /// The [`WgpuBackend::id`] that allocated it.
    backend_id: u64,
}

/// A WGSL backend on one wgpu adapter (`wgpu:N`).
pub struct WgpuBackend {
    name: String,
    id: u64,
    info: wgpu::AdapterInfo,
    features: wgpu::Features,
    limits: wgpu::Limits,
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipelines: PipelineCache,
    /// Errors that reached the uncaptured handler (should never happen: all
    /// calls run in scopes; a safety net, drained after every operation).
    uncaptured: Arc<Mutex<Vec<String>>>,
    /// Set by the device-lost callback.
    lost: Arc<Mutex<Option<String>>>,
    /// wgpu's error-scope stack is per device, not per thread: operations
    /// that push and pop scopes are serialized by this lock.
    scope: Mutex<()>,
    /// Bound in place of absent optional arguments (bias, lse).
    dummy: wgpu::Buffer,
}

impl fmt::Debug for WgpuBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WgpuBackend")
            .field("name", &self.name)
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .field("pipelines", &self.pipelines.len())
            .finish()
    }
}

/// A tensor (or a stand-in) as bound to a kernel: a window of a buffer.
pub(crate) struct Window<'a> {
    buffer: &'a wgpu::Buffer,
    offset: u64,
    size: u64,
}

impl<'a> Window<'a> {
    /// All of `buffer` (a table from [`WgpuBackend::table_buffer`]).
    pub(crate) fn whole(buffer: &'a wgpu::Buffer) -> Self {
        Window {
            buffer,
            offset: 0,
            size: buffer.size(),
        }
    }
}

/// Enumerates every adapter and creates a device for each usable one.
pub(super) fn discover_adapters() -> Vec<Discovered> {
    let mut desc = wgpu::InstanceDescriptor::from_env_or_default();
    desc.backends = wgpu::Backends::from_env()
        .unwrap_or(wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12);
    let instance = wgpu::Instance::new(&desc);
    let adapters = instance.enumerate_adapters(desc.backends);
    if adapters.is_empty() {
        return vec![Discovered {
            name: "wgpu".into(),
            status: Err(
                "no Vulkan, Metal or DX12 adapter found (on Linux without a GPU, Mesa's lavapipe \
                 provides one: package mesa-vulkan-drivers)"
                    .into(),
            ),
            software: false,
        }];
    }
    adapters
        .into_iter()
        .enumerate()
        .map(|(index, adapter)| {
            let name = format!("wgpu:{index}");
            let info = adapter.get_info();
            let software = info.device_type == wgpu::DeviceType::Cpu;
            let status = WgpuBackend::new(name.clone(), adapter).map(Arc::new);
            Discovered {
                name,
                status,
                software,
            }
        })
        .collect()
}

/// Why `adapter` cannot run the kernels, if it cannot.
fn adapter_shortfall(adapter: &wgpu::Adapter) -> Option<String> {
    let downlevel = adapter.get_downlevel_capabilities();
    if !downlevel
        .flags
        .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
    {
        return Some("the adapter has no compute shaders".into());
    }
    let l = adapter.limits();
    let checks = [
        (
            "max_compute_invocations_per_workgroup",
            l.max_compute_invocations_per_workgroup,
            NEEDED_INVOCATIONS,
        ),
        (
            "max_compute_workgroup_size_x",
            l.max_compute_workgroup_size_x,
            NEEDED_WORKGROUP_SIZE_X,
        ),
        (
            "max_compute_workgroup_storage_size",
            l.max_compute_workgroup_storage_size,
            NEEDED_WORKGROUP_STORAGE,
        ),
        (
            "max_storage_buffers_per_shader_stage",
            l.max_storage_buffers_per_shader_stage,
            NEEDED_STORAGE_BUFFERS,
        ),
    ];
    checks
        .iter()
        .find(|(_, have, need)| have < need)
        .map(|(limit, have, need)| format!("{limit} is {have}; the kernels need {need}"))
}

impl WgpuBackend {
    /// Creates the device for `adapter`, or says why it cannot be used.
    fn new(name: String, adapter: wgpu::Adapter) -> Result<Self, String> {
        let info = adapter.get_info();
        if let Some(reason) = adapter_shortfall(&adapter) {
            return Err(format!("{} ({:?}): {reason}", info.name, info.backend));
        }
        // Ask for everything the adapter offers: larger buffers and bindings
        // than the WebGPU defaults mean fewer shapes refused.
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("radiant"),
            required_features: wgpu::Features::empty(),
            required_limits: adapter.limits(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| {
            format!(
                "{} ({:?}): device request failed: {e}",
                info.name, info.backend
            )
        })?;
        Ok(Self::with_device(
            name,
            info,
            adapter.features(),
            device,
            queue,
        ))
    }

    /// A backend on a device the caller already owns (an engine that renders
    /// or computes with wgpu itself), so its buffers can be used without a
    /// copy ([`WgpuBackend::import_buffer`]). `name` is the backend's
    /// selection name (e.g. `wgpu:engine`). The device must offer at least
    /// the WebGPU default compute limits.
    ///
    /// radiant installs its own uncaptured-error handler and device-lost
    /// callback on `device` (wgpu keeps one of each), and pushes and pops
    /// error scopes around its own calls only.
    pub fn from_device(
        name: impl Into<String>,
        adapter: &wgpu::Adapter,
        device: wgpu::Device,
        queue: wgpu::Queue,
    ) -> Result<Self> {
        let name = name.into();
        let limits = device.limits();
        let shortfall = adapter_shortfall(adapter).or_else(|| {
            (limits.max_compute_invocations_per_workgroup < NEEDED_INVOCATIONS
                || limits.max_compute_workgroup_storage_size < NEEDED_WORKGROUP_STORAGE
                || limits.max_storage_buffers_per_shader_stage < NEEDED_STORAGE_BUFFERS)
                .then(|| "the device was requested with limits below the WebGPU defaults".into())
        });
        if let Some(reason) = shortfall {
            return Err(Error::Unavailable {
                backend: name,
                reason,
            });
        }
        let features = device.features();
        Ok(Self::with_device(
            name,
            adapter.get_info(),
            features,
            device,
            queue,
        ))
    }

    fn with_device(
        name: String,
        info: wgpu::AdapterInfo,
        features: wgpu::Features,
        device: wgpu::Device,
        queue: wgpu::Queue,
    ) -> Self {
        let limits = device.limits();
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Box::new(move |error| {
            lock(&sink).push(error.to_string());
        }));
        let lost = Arc::new(Mutex::new(None));
        let lost_flag = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, message| {
            *lock(&lost_flag) = Some(format!("device lost ({reason:?}): {message}"));
        });
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("radiant unused-argument stand-in"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        WgpuBackend {
            name,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            features,
            info,
            limits,
            device,
            queue,
            pipelines: PipelineCache::default(),
            uncaptured,
            lost,
            scope: Mutex::new(()),
            dummy,
        }
    }

    /// The wgpu device and queue this backend launches on.
    pub fn device(&self) -> (&wgpu::Device, &wgpu::Queue) {
        (&self.device, &self.queue)
    }

    /// Wraps a caller's buffer (of this backend's device) as a radiant
    /// [`Buffer`] without copying; the first `len_bytes` bytes are usable
    /// by views. It needs STORAGE, COPY_SRC and COPY_DST usage and a size
    /// that is a multiple of 4.
    pub fn import_buffer(&self, buffer: wgpu::Buffer, len_bytes: usize) -> Result<Buffer> {
        let needed = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        if !buffer.usage().contains(needed) {
            return Err(Error::invalid(
                "import_buffer",
                "buffer",
                format!(
                    "usage {:?} lacks STORAGE | COPY_SRC | COPY_DST",
                    buffer.usage()
                ),
            ));
        }
        if !buffer.size().is_multiple_of(4) || (len_bytes as u64) > buffer.size() {
            return Err(Error::invalid(
                "import_buffer",
                "len_bytes",
                format!(
                    "{len_bytes} bytes in a {}-byte buffer (the size must be a multiple of 4 \
                     and hold len_bytes)",
                    buffer.size()
                ),
            ));
        }
        let memory = WgpuMemory {
            buffer,
            backend_id: self.id,
        };
        Ok(Buffer::new(&self.name, len_bytes, Arc::new(memory)))
    }

    /// The wgpu buffer behind `buffer`, if this backend allocated or
    /// imported it (to hand radiant's outputs to the caller's own passes).
    pub fn wgpu_buffer<'a>(&self, buffer: &'a Buffer) -> Option<&'a wgpu::Buffer> {
        buffer
            .memory::<WgpuMemory>()
            .filter(|m| m.backend_id == self.id)
            .map(|m| &m.buffer)
    }

    pub(crate) fn name_str(&self) -> &str {
        &self.name
    }

    pub(crate) fn device_info(&self) -> DeviceInfo {
        let info = &self.info;
        let l = &self.limits;
        let mut features = vec![
            format!("backend={:?}", info.backend),
            // Exactly `type=Cpu` for a software adapter: `bench::roofline::
            // is_software_adapter` matches this string.
            format!("type={:?}", info.device_type),
        ];
        if info.device_type == wgpu::DeviceType::Cpu {
            features.push("software adapter (`best` prefers cpu)".into());
        }
        if self.features.contains(wgpu::Features::SHADER_F16) {
            features.push("shader-f16 (unused: f16 is converted in software)".into());
        }
        if self.features.contains(wgpu::Features::SUBGROUP) {
            features.push("subgroups".into());
        }
        features.extend([
            format!("max_buffer_size={}", l.max_buffer_size),
            format!(
                "max_storage_buffer_binding_size={}",
                l.max_storage_buffer_binding_size
            ),
            format!(
                "max_compute_workgroup_storage_size={}",
                l.max_compute_workgroup_storage_size
            ),
            format!(
                "max_compute_invocations_per_workgroup={}",
                l.max_compute_invocations_per_workgroup
            ),
            format!(
                "max_compute_workgroups_per_dimension={}",
                l.max_compute_workgroups_per_dimension
            ),
            format!(
                "min_storage_buffer_offset_alignment={}",
                l.min_storage_buffer_offset_alignment
            ),
        ]);
        let mut driver = format!("{:?}", info.backend);
        for part in [&info.driver, &info.driver_info] {
            if !part.is_empty() {
                driver.push(' ');
                driver.push_str(part);
            }
        }
        DeviceInfo {
            name: self.name.clone(),
            device: info.name.clone(),
            driver: Some(driver),
            memory_bytes: None,
            features,
        }
    }

    pub(crate) fn owns_buffer(&self, buffer: &Buffer) -> bool {
        buffer
            .memory::<WgpuMemory>()
            .is_some_and(|m| m.backend_id == self.id)
    }

    fn memory<'a>(
        &self,
        op: &'static str,
        arg: &'static str,
        buffer: &'a Buffer,
    ) -> Result<&'a WgpuMemory> {
        buffer
            .memory::<WgpuMemory>()
            .filter(|m| m.backend_id == self.id)
            .ok_or_else(|| {
                Error::invalid(
                    op,
                    arg,
                    format!("lives on {}, not on {}", buffer.device(), self.name),
                )
            })
    }

    fn device_error(&self, op: &'static str, reason: impl Into<String>) -> Error {
        Error::Device {
            backend: self.name.clone(),
            op,
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(&self, op: OpKind, reason: impl Into<String>) -> Error {
        Error::Unsupported(Unsupported {
            backend: self.name.clone(),
            op,
            reason: reason.into(),
        })
    }

    /// Runs `f` inside validation / out-of-memory / internal error scopes
    /// (serialized with every other scoped call on this device) and turns
    /// whatever wgpu reports into a typed error. `alloc_bytes` names the
    /// allocation when an out-of-memory error should read as one.
    fn scoped<T>(
        &self,
        op: &'static str,
        alloc_bytes: Option<usize>,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let _serial = lock(&self.scope);
        self.check_healthy(op)?;
        self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let result = f();
        // On native wgpu the scope futures are ready at once.
        let validation = pollster::block_on(self.device.pop_error_scope());
        let out_of_memory = pollster::block_on(self.device.pop_error_scope());
        let internal = pollster::block_on(self.device.pop_error_scope());
        if let Some(error) = out_of_memory {
            return Err(match alloc_bytes {
                Some(bytes) => Error::OutOfMemory {
                    backend: self.name.clone(),
                    bytes,
                },
                None => self.device_error(op, format!("out of memory: {error}")),
            });
        }
        if let Some(error) = validation.or(internal) {
            return Err(self.device_error(op, error.to_string()));
        }
        self.check_healthy(op)?;
        result
    }

    /// Fails if the device was lost or an error escaped the scopes.
    fn check_healthy(&self, op: &'static str) -> Result<()> {
        if let Some(reason) = lock(&self.lost).clone() {
            return Err(self.device_error(op, reason));
        }
        let escaped: Vec<String> = lock(&self.uncaptured).drain(..).collect();
        if !escaped.is_empty() {
            return Err(self.device_error(op, escaped.join("; ")));
        }
        Ok(())
    }

    /// Waits for all submitted work (the caller holds the scope lock).
    /// wgpu gives up a wait after 60 s; slow adapters (lavapipe running a
    /// large attention) legitimately take longer, so a timeout is retried
    /// for as long as the device is not lost.
    fn wait_idle(&self, op: &'static str) -> Result<()> {
        loop {
            match self.device.poll(wgpu::PollType::Wait) {
                Ok(_) => return Ok(()),
                Err(wgpu::PollError::Timeout) => {
                    if let Some(reason) = lock(&self.lost).clone() {
                        return Err(self.device_error(op, reason));
                    }
                }
            }
        }
    }

    pub(crate) fn alloc_buffer(&self, bytes: usize) -> Result<Buffer> {
        let size = (bytes.max(1) as u64).div_ceil(4) * 4;
        if size > self.limits.max_buffer_size {
            return Err(self.device_error(
                "alloc",
                format!(
                    "{bytes} bytes exceed this adapter's max_buffer_size ({})",
                    self.limits.max_buffer_size
                ),
            ));
        }
        let buffer = self.scoped("alloc", Some(bytes), || {
            Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }))
        })?;
        let memory = WgpuMemory {
            buffer,
            backend_id: self.id,
        };
        Ok(Buffer::new(&self.name, bytes, Arc::new(memory)))
    }

    fn check_range(op: &'static str, buffer: &Buffer, offset: usize, len: usize) -> Result<()> {
        if offset
            .checked_add(len)
            .is_none_or(|end| end > buffer.len_bytes())
        {
            return Err(Error::invalid(
                op,
                "offset",
                format!(
                    "{len} bytes at offset {offset} exceed the {}-byte buffer",
                    buffer.len_bytes()
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn upload_bytes(&self, dst: &Buffer, offset: usize, src: &[u8]) -> Result<()> {
        const OP: &str = "upload";
        let memory = self.memory(OP, "dst", dst)?;
        Self::check_range(OP, dst, offset, src.len())?;
        if src.is_empty() {
            return Ok(());
        }
        // write_buffer needs 4-byte aligned offsets and sizes: widen to whole
        // words and keep the bytes of the edge words that are not ours.
        let start = offset / 4 * 4;
        let end = (offset + src.len()).div_ceil(4) * 4;
        self.scoped(OP, None, || {
            let mut words = vec![0u8; end - start];
            let head_partial = start != offset;
            let tail_partial = end != offset + src.len();
            if head_partial {
                self.read_words(OP, &memory.buffer, start, &mut words[..4])?;
            }
            // (A single partial word was already read as the head.)
            if tail_partial && !(head_partial && end - start == 4) {
                let len = words.len();
                self.read_words(OP, &memory.buffer, end - 4, &mut words[len - 4..])?;
            }
            words[offset - start..offset - start + src.len()].copy_from_slice(src);
            self.queue
                .write_buffer(&memory.buffer, start as u64, &words);
            // Flush the staged write now rather than at the next launch.
            self.queue.submit(std::iter::empty());
            Ok(())
        })
    }

    pub(crate) fn download_bytes(&self, src: &Buffer, offset: usize, dst: &mut [u8]) -> Result<()> {
        const OP: &str = "download";
        let memory = self.memory(OP, "src", src)?;
        Self::check_range(OP, src, offset, dst.len())?;
        if dst.is_empty() {
            return Ok(());
        }
        let start = offset / 4 * 4;
        let end = (offset + dst.len()).div_ceil(4) * 4;
        self.scoped(OP, None, || {
            let mut words = vec![0u8; end - start];
            self.read_words(OP, &memory.buffer, start, &mut words)?;
            dst.copy_from_slice(&words[offset - start..offset - start + dst.len()]);
            Ok(())
        })
    }

    /// Copies `out.len()` bytes (a multiple of 4) at `offset` (a multiple of
    /// 4) of `buffer` to the host, waiting for earlier work. Caller holds the
    /// scope lock.
    fn read_words(
        &self,
        op: &'static str,
        buffer: &wgpu::Buffer,
        offset: usize,
        out: &mut [u8],
    ) -> Result<()> {
        let size = out.len() as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("radiant download"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        encoder.copy_buffer_to_buffer(buffer, offset as u64, &staging, 0, size);
        self.queue.submit([encoder.finish()]);
        let slice = staging.slice(..);
        let (sender, receiver) = mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |result| {
            // The receiver waits below; a send can only fail if it is gone.
            let _ = sender.send(result);
        });
        self.wait_idle(op)?;
        match receiver.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(self.device_error(op, format!("mapping the staging buffer: {e}")));
            }
            Err(_) => {
                return Err(self.device_error(op, "the staging buffer was never mapped"));
            }
        }
        out.copy_from_slice(&slice.get_mapped_range());
        staging.unmap();
        Ok(())
    }

    pub(crate) fn sync(&self) -> Result<()> {
        self.scoped("synchronize", None, || self.wait_idle("synchronize"))
    }

    /// The binding window of `t` and the element offset of its first
    /// element inside that window.
    pub(crate) fn window<'a>(
        &self,
        op: OpKind,
        arg: &'static str,
        t: &'a Tensor,
    ) -> Result<(Window<'a>, u32)> {
        let memory = self.memory(op.name(), arg, t.buffer())?;
        let buffer = &memory.buffer;
        if t.byte_len() == 0 {
            // Never read: bind the buffer's first word.
            return Ok((
                Window {
                    buffer,
                    offset: 0,
                    size: 4,
                },
                0,
            ));
        }
        let align = u64::from(self.limits.min_storage_buffer_offset_alignment.max(4));
        let byte_offset = t.byte_offset() as u64;
        let start = byte_offset / align * align;
        let end = (byte_offset + t.byte_len() as u64).div_ceil(4) * 4;
        let size = end - start;
        let max = u64::from(self.limits.max_storage_buffer_binding_size);
        if size > max {
            return Err(self.unsupported(
                op,
                format!(
                    "`{arg}` spans {size} bytes, over this adapter's \
                     max_storage_buffer_binding_size ({max})"
                ),
            ));
        }
        let element = (byte_offset - start) / t.dtype().size_in_bytes() as u64;
        Ok((
            Window {
                buffer,
                offset: start,
                size,
            },
            element as u32,
        ))
    }

    /// A read-only storage buffer holding `contents` (a small table made on
    /// the host for one launch), bound whole with [`Window::whole`].
    pub(crate) fn table_buffer(&self, op: OpKind, contents: &[u8]) -> Result<wgpu::Buffer> {
        self.scoped(op.name(), None, || {
            Ok(self
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("radiant table"),
                    contents,
                    usage: wgpu::BufferUsages::STORAGE,
                }))
        })
    }

    /// The stand-in bound for an absent optional argument.
    pub(crate) fn unused_window(&self) -> (Window<'_>, u32) {
        (
            Window {
                buffer: &self.dummy,
                offset: 0,
                size: 16,
            },
            0,
        )
    }

    fn pipeline(&self, op: &'static str, kernel: &Kernel) -> Result<Arc<wgpu::ComputePipeline>> {
        if let Some(pipeline) = self.pipelines.get(kernel) {
            return Ok(pipeline);
        }
        if !kernel.is_validated() {
            return Err(self.device_error(
                op,
                format!(
                    "internal: {kernel:?} is not a variant build.rs validated for {}",
                    kernel.file()
                ),
            ));
        }
        let source = kernel.source();
        let pipeline = self.scoped(op, None, || {
            let module = self
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(kernel.file()),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                });
            Ok(self
                .device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(kernel.file()),
                    layout: None,
                    module: &module,
                    entry_point: Some(kernel.entry_point()),
                    compilation_options: wgpu::PipelineCompilationOptions::default(),
                    cache: None,
                }))
        })?;
        Ok(self.pipelines.insert(*kernel, pipeline))
    }

    /// Launches `workgroups` workgroups of `kernel` with `params` as the
    /// uniform at binding 0 and `windows` at bindings 1, 2, ... The
    /// workgroups are laid out on a 2-D grid; kernels read their linear id
    /// as `wid.x + wid.y · nwg.x` and skip ids past the count.
    pub(crate) fn launch(
        &self,
        op: OpKind,
        kernel: Kernel,
        params: &[u8],
        windows: &[Window<'_>],
        workgroups: u64,
    ) -> Result<()> {
        if workgroups == 0 {
            return Ok(());
        }
        let max = u64::from(self.limits.max_compute_workgroups_per_dimension);
        let x = workgroups.min(max);
        let y = workgroups.div_ceil(x);
        if y > max {
            return Err(self.unsupported(
                op,
                format!(
                    "{workgroups} workgroups exceed this adapter's \
                     max_compute_workgroups_per_dimension ({max}) squared"
                ),
            ));
        }
        let pipeline = self.pipeline(op.name(), &kernel)?;
        self.scoped(op.name(), None, || {
            let uniform = self
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("radiant params"),
                    contents: params,
                    usage: wgpu::BufferUsages::UNIFORM,
                });
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: uniform.as_entire_binding(),
            }];
            for (i, w) in windows.iter().enumerate() {
                entries.push(wgpu::BindGroupEntry {
                    binding: i as u32 + 1,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: w.buffer,
                        offset: w.offset,
                        size: NonZeroU64::new(w.size),
                    }),
                });
            }
            let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(kernel.file()),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            });
            let mut encoder = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some(kernel.file()),
                });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(kernel.file()),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(x as u32, y as u32, 1);
            }
            self.queue.submit([encoder.finish()]);
            Ok(())
        })
    }
}

/// Locks `mutex`, ignoring poisoning: every guarded value here (error lists,
/// a flag, a unit) stays consistent whatever a panicking holder did.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The WGSL `DT` constant of an activation dtype (kernels/wgsl/common.wgsl).
pub(crate) fn dt_code(dtype: DType) -> Option<u32> {
    match dtype {
        DType::F32 => Some(0),
        DType::F16 => Some(1),
        DType::BF16 => Some(2),
        DType::U8 | DType::I32 | DType::F8E4M3 => None,
    }
}

/// `value` as a u32 kernel parameter; ops/ keeps every count below 2^31, so
/// a failure is an internal error, reported rather than truncated.
pub(crate) fn u32_param(op: &'static str, arg: &'static str, value: usize) -> Result<u32> {
    u32::try_from(value).map_err(|_| {
        Error::invalid(
            op,
            arg,
            format!("{value} does not fit the kernels' 32-bit indices"),
        )
    })
}
