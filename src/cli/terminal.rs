//! The width of the terminal a table is printed to: `COLUMNS` when set, else the terminal's own
//! (`TIOCGWINSZ`) when stdout is one; `None` when output goes to a file or a pipe, which gets
//! every cell whole.

use std::io::IsTerminal;

/// The width, in characters, to fit stdout's lines to.
pub fn stdout_width() -> Option<usize> {
    if let Some(columns) = std::env::var("COLUMNS").ok().and_then(|value| value.trim().parse::<usize>().ok()) {
        return Some(columns).filter(|&columns| columns > 0);
    }
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let mut size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct it is given, which lives here.
    let found = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (found == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}
