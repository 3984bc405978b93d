//! Typed errors. Every limit violation and every kind of bad input has its own
//! variant, so callers (the host's HTTP layer, the control plane) can map them
//! to statuses and metrics without parsing messages.

use std::time::Duration;

/// Why a binary was refused at load time, before or during compilation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The input is empty or does not start with `\0asm`.
    #[error("not a WebAssembly binary: expected the magic bytes \\0asm at offset 0")]
    BadMagic,
    /// The header names a binary format version/layer this runtime does not run.
    #[error("unsupported WebAssembly binary version {version:#x} (layer {layer})")]
    UnsupportedVersion {
        /// The 16-bit version field.
        version: u16,
        /// The 16-bit layer field (0 = core module, 1 = component).
        layer: u16,
    },
    /// The binary is larger than the configured maximum.
    #[error("binary is {size} bytes, larger than the limit of {limit} bytes")]
    TooLarge {
        /// Size of the input in bytes.
        size: usize,
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The binary is truncated or malformed.
    #[error("invalid WebAssembly at offset {offset:#x}: {message}")]
    Invalid {
        /// Byte offset of the problem.
        offset: usize,
        /// What the validator found.
        message: String,
    },
    /// The binary uses a WebAssembly proposal this runtime does not enable.
    #[error("disallowed WebAssembly proposal at offset {offset:#x}: {message}")]
    DisallowedProposal {
        /// Byte offset of the first use.
        offset: usize,
        /// The validator's message, which names the proposal.
        message: String,
    },
    /// The binary imports something outside the allowed capability set.
    #[error("import `{import}` is outside the allowed capability set")]
    DisallowedImport {
        /// The import, as `module::name` (core) or the interface name (component).
        import: String,
    },
    /// A table is declared larger than the runtime allows.
    #[error("table declares {declared} elements at minimum; the limit is {limit}")]
    TableTooLarge {
        /// Minimum elements declared.
        declared: u64,
        /// Configured maximum elements.
        limit: u64,
    },
    /// A linear memory is declared larger than the runtime allows.
    #[error("memory declares {declared_bytes} bytes at minimum; the limit is {limit_bytes}")]
    MemoryTooLarge {
        /// Minimum size declared, in bytes.
        declared_bytes: u64,
        /// Configured maximum, in bytes.
        limit_bytes: u64,
    },
    /// Cranelift did not finish compiling within the configured time.
    #[error("compilation did not finish within {0:?}")]
    CompileTimeout(Duration),
    /// Compilation or linking failed after validation passed.
    #[error("compilation failed: {0}")]
    Compile(String),
}

/// What went wrong running a guest, or setting one up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The binary was refused at load time.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The guest tried to use more linear memory than its limit.
    #[error("memory limit of {limit_bytes} bytes exceeded")]
    MemoryLimit {
        /// The version's memory limit in bytes.
        limit_bytes: u64,
    },
    /// The guest tried to grow a table past its limit.
    #[error("table limit of {limit} elements exceeded")]
    TableLimit {
        /// The version's table element limit.
        limit: u64,
    },
    /// The guest tried to create more instances, tables or memories than allowed.
    #[error("resource limit exceeded: {0}")]
    ResourceLimit(String),
    /// Every pooled instance slot is in use: the node is at capacity. Not
    /// the guest's fault; retry later or elsewhere.
    #[error("at capacity: {0}")]
    PoolExhausted(String),
    /// The call ran past its wall-clock timeout.
    #[error("execution timed out after {0:?}")]
    Timeout(Duration),
    /// The guest used more CPU time than its budget.
    #[error("CPU time budget of {0:?} exceeded")]
    CpuLimit(Duration),
    /// The guest ran out of fuel.
    #[error("fuel exhausted")]
    FuelExhausted,
    /// The guest overflowed its wasm stack (e.g. unbounded recursion).
    #[error("wasm stack overflow")]
    StackOverflow,
    /// The guest trapped.
    #[error("guest trapped: {message}")]
    Trap {
        /// Wasmtime's trap code, when there is one.
        code: Option<wasmtime::Trap>,
        /// The trap message with its wasm backtrace.
        message: String,
    },
    /// A WASI command called `proc_exit` with a non-zero status.
    #[error("guest exited with status {0}")]
    Exit(i32),
    /// No export with that name, or it is not a function.
    #[error("no exported function named `{0}`")]
    NoSuchFunction(String),
    /// Arguments did not match the function's signature.
    #[error("bad argument `{param}`: expected {expected}, {problem}")]
    BadArgument {
        /// Path of the offending value (`p.label`, `xs[3]`, or the arity).
        param: String,
        /// The expected WIT or wasm type.
        expected: String,
        /// What was wrong with the given value.
        problem: String,
    },
    /// A value the guest returned cannot be represented as JSON.
    #[error("cannot convert result to JSON: {0}")]
    Unrepresentable(String),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The component or module could not be instantiated (e.g. an import is missing).
    #[error("instantiation failed: {0}")]
    Instantiate(String),
    /// The compiled-artifact cache failed on I/O.
    #[error("artifact cache: {0}")]
    Cache(#[source] std::io::Error),
    /// The WASI sandbox could not be set up (e.g. a preopen directory is missing).
    #[error("sandbox setup failed: {0}")]
    Sandbox(String),
    /// The async runtime was missing or a worker thread died.
    #[error("internal error: {0}")]
    Internal(String),
    /// The client stopped reading a streamed response (it hung up), and
    /// the guest then failed, typically writing the body nobody reads. Not
    /// the guest's fault, and not an answer anyone sees: counted apart
    /// (HTTP servers log it as 499) so a rollout does not blame the version.
    #[error(
        "the client closed the connection before the response ended; the guest then stopped: {0}"
    )]
    ClientClosed(String),
    /// A call run by the runtime's [`Isolator`](crate::Isolator) failed
    /// there: the kind it failed with, and its message.
    #[error("{message}")]
    Isolated {
        /// What kind of failure it was where it ran.
        kind: ErrorKind,
        /// The failure's own message.
        message: String,
    },
}

impl Error {
    /// A stable, short name for metrics labels and API error codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Load(_) => ErrorKind::Load,
            Error::MemoryLimit { .. } => ErrorKind::MemoryLimit,
            Error::TableLimit { .. } | Error::ResourceLimit(_) => ErrorKind::ResourceLimit,
            Error::Timeout(_) => ErrorKind::Timeout,
            Error::CpuLimit(_) => ErrorKind::CpuLimit,
            Error::FuelExhausted => ErrorKind::FuelExhausted,
            Error::StackOverflow => ErrorKind::StackOverflow,
            Error::Trap { .. } | Error::Exit(_) => ErrorKind::Trap,
            Error::NoSuchFunction(_) | Error::BadArgument { .. } => ErrorKind::BadRequest,
            Error::PoolExhausted(_) => ErrorKind::Overloaded,
            Error::ClientClosed(_) => ErrorKind::ClientClosed,
            Error::Isolated { kind, .. } => *kind,
            _ => ErrorKind::Internal,
        }
    }

    /// Whether the guest itself misbehaved (as opposed to a bad call or a host fault).
    pub fn is_guest_fault(&self) -> bool {
        let kind = self.kind();
        kind.is_limit() || kind == ErrorKind::Trap
    }
}

/// Coarse error classes, used as counter keys and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// Refused at load time.
    Load,
    /// Linear memory limit.
    MemoryLimit,
    /// Table, instance or memory count limit.
    ResourceLimit,
    /// Wall-clock timeout.
    Timeout,
    /// CPU time budget.
    CpuLimit,
    /// Fuel exhausted.
    FuelExhausted,
    /// Wasm stack overflow.
    StackOverflow,
    /// Any other trap.
    Trap,
    /// Bad function name or arguments.
    BadRequest,
    /// No instance slot free.
    Overloaded,
    /// A host-side failure.
    Internal,
    /// The client hung up before the response ended.
    ClientClosed,
}

impl ErrorKind {
    /// Whether the guest ran into one of its limits (memory, resources,
    /// time, CPU, fuel, stack): a guest that uses too much, rather than one
    /// with a bug (a trap), a bad call or a host fault.
    pub fn is_limit(self) -> bool {
        matches!(
            self,
            ErrorKind::MemoryLimit
                | ErrorKind::ResourceLimit
                | ErrorKind::Timeout
                | ErrorKind::CpuLimit
                | ErrorKind::FuelExhausted
                | ErrorKind::StackOverflow
        )
    }

    /// Every kind, in a fixed order (the index used by per-kind counters).
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::Load,
        ErrorKind::MemoryLimit,
        ErrorKind::ResourceLimit,
        ErrorKind::Timeout,
        ErrorKind::CpuLimit,
        ErrorKind::FuelExhausted,
        ErrorKind::StackOverflow,
        ErrorKind::Trap,
        ErrorKind::BadRequest,
        ErrorKind::Overloaded,
        ErrorKind::Internal,
        ErrorKind::ClientClosed,
    ];

    /// The snake_case name used in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Load => "load",
            ErrorKind::MemoryLimit => "memory_limit",
            ErrorKind::ResourceLimit => "resource_limit",
            ErrorKind::Timeout => "timeout",
            ErrorKind::CpuLimit => "cpu_limit",
            ErrorKind::FuelExhausted => "fuel_exhausted",
            ErrorKind::StackOverflow => "stack_overflow",
            ErrorKind::Trap => "trap",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Internal => "internal",
            ErrorKind::ClientClosed => "client_closed",
        }
    }

    /// The kind named `name` (as [`as_str`](Self::as_str) spells it).
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    pub(crate) fn index(self) -> usize {
        Self::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
