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
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// `mi_option_arena_eager_commit` in mimalloc 3's `mimalloc.h` (libmimalloc-sys names no
/// constant for it).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Runs [`tune_allocator`] as an ELF constructor: before `main`, because the Rust runtime
/// allocates (and so makes mimalloc reserve its first arena) before `main` starts.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

/// Makes mimalloc commit arena memory as it is used rather than up front. By default on Linux
/// (overcommit) it commits its whole first arena eagerly and does not hand freed pages back,
/// so the rule compiler's temporaries stayed resident: idle RSS with 10k rules was 42 MiB,
/// 20 MiB with this (`cargo bench --bench scale`). `MIMALLOC_ARENA_EAGER_COMMIT` still wins.
extern "C" fn tune_allocator() {
    unsafe extern "C" {
        fn getenv(name: *const std::ffi::c_char) -> *mut std::ffi::c_char;
    }
    // SAFETY: runs before main, on the only thread, so nothing changes the environment
    // meanwhile (and libc's getenv does not allocate, so mimalloc is not started yet);
    // mi_option_set only changes how arena memory reserved later is committed.
    unsafe {
        if getenv(c"MIMALLOC_ARENA_EAGER_COMMIT".as_ptr()).is_null() {
            libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        }
    }
}
