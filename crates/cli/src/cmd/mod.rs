//! One module per subcommand.

/// Like `println!`, but a closed stdout (`agent-audit run ... | head -1`)
/// ends output quietly instead of panicking, and any other write error
/// returns from the calling command as a [`crate::error::CliError`].
macro_rules! outln {
    () => {
        $crate::cmd::print("")?
    };
    ($($arg:tt)*) => {
        $crate::cmd::print(&format!($($arg)*))?
    };
}

/// Like `eprintln!`, but never panics: a stderr that cannot be written
/// (`2>/dev/full`, a closed descriptor) must not turn a finished command
/// into a crash with exit 101. The line is lost, since stderr is where it
/// would have been reported; the exit code still tells what happened.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `errln!` without the newline.
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

pub mod bench;
pub mod keygen;
pub mod location;
pub mod report;
pub mod run;
pub mod show;
pub mod stats;
pub mod tail;
pub mod timeline;
pub mod verify;

/// Writes one line to stdout; see `outln!`.
pub fn print(line: &str) -> Result<(), crate::error::CliError> {
    let mut out = std::io::stdout().lock();
    if show::write_out(&mut out, line.as_bytes())? {
        show::write_out(&mut out, b"\n")?;
    }
    show::flush_out(&mut out)
}
