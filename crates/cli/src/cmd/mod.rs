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

pub mod bench;
pub mod keygen;
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
