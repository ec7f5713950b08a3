use crate::cli::GenerateArgs;
use crate::error::{Error, Result};

use super::Flags;

/// Writes `man/peerstage.1` and `completions/` under the given dir (the repository root when
/// run as `cargo run -- generate`).
pub fn run(flags: &Flags, args: GenerateArgs) -> Result<i32> {
    let written = crate::docs::write_all(&args.dir)
        .map_err(|err| Error::failed(format!("{}: {err}", args.dir.display())))?;
    if !flags.quiet {
        for path in written {
            println!("wrote {}", path.display());
        }
    }
    Ok(0)
}
