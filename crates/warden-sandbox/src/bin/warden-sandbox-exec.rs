//! The sandbox launcher as a standalone program: `warden-sandbox-exec __sandbox-exec ...`.
//! The gateway re-executes itself instead; this binary serves this crate's tests and benches.

use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let code = match args.split_first() {
        Some((first, rest)) if first == warden_sandbox::launcher::LAUNCHER_ARG => {
            warden_sandbox::launcher::main(rest)
        }
        _ => {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"usage: warden-sandbox-exec __sandbox-exec <profile-json> | --probe <dir>\n",
            );
            warden_sandbox::launcher::EXIT_SETUP_FAILED
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}
