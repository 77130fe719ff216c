//! The `mirrorswap` binary: parses the command line and runs it.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's allocator: /mutate served 13% more requests per second in
/// `cargo bench --bench load` (each request allocates a few dozen small buffers).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = mirrorswap::cli::Cli::parse();
    match mirrorswap::cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", mirrorswap::error_chain::anyhow_line(&error));
            ExitCode::from(2)
        }
    }
}

/// `mi_option_arena_eager_commit` and `mi_option_arena_max_object_size` in mimalloc 3's
/// `mimalloc.h` (libmimalloc-sys names no constants for them).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_ARENA_MAX_OBJECT_SIZE: libmimalloc_sys::mi_option_t = 45;
/// Objects larger than this (in KiB) are mapped from the OS and unmapped when freed.
const ARENA_MAX_OBJECT_KIB: std::ffi::c_long = 1024;

/// Runs [`tune_allocator`] as an ELF constructor: before `main`, because the Rust runtime
/// allocates (and so makes mimalloc reserve its first arena) before `main` starts.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

/// Two mimalloc defaults that cost resident memory in a webhook:
/// - It commits its whole first arena eagerly and does not hand freed pages back, so the rule
///   compiler's temporaries stayed resident: idle RSS with 10k rules was 42 MiB, 20 MiB with
///   eager commit off (`cargo bench --bench scale`).
/// - It keeps a freed large block (a request body over 1 MiB) committed in its arena for
///   100 ms before purging it, while the next bodies take fresh pages: under 64 concurrent
///   2.5 MiB reviews the peak RSS (debug build) spread from 76 to 98 MiB. Mapped from the OS, a
///   body's pages go back when it is freed, and the peak stays within 65-73 MiB
///   (`tests/memory_bound.rs`).
///
/// `MIMALLOC_ARENA_EAGER_COMMIT` and `MIMALLOC_ARENA_MAX_OBJECT_SIZE` still win.
extern "C" fn tune_allocator() {
    unsafe extern "C" {
        fn getenv(name: *const std::ffi::c_char) -> *mut std::ffi::c_char;
    }
    // SAFETY: runs before main, on the only thread, so nothing changes the environment
    // meanwhile (and libc's getenv does not allocate, so mimalloc is not started yet);
    // mi_option_set only changes how memory reserved later is committed and placed.
    unsafe {
        if getenv(c"MIMALLOC_ARENA_EAGER_COMMIT".as_ptr()).is_null() {
            libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        }
        if getenv(c"MIMALLOC_ARENA_MAX_OBJECT_SIZE".as_ptr()).is_null() {
            libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_MAX_OBJECT_SIZE, ARENA_MAX_OBJECT_KIB);
        }
    }
}
