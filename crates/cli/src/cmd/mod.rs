//! One module per subcommand.

pub mod bench;
pub mod keygen;
pub mod report;
pub mod run;
pub mod show;
pub mod stats;
pub mod tail;
pub mod timeline;
pub mod verify;
