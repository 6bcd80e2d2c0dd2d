//! The `rhizomorph` command-line tool.
//!
//! `inspect` decodes a hex frame dump into readable lines (no input: a sample conversation).

use std::io::Read;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rhizomorph::frame::Settings;
use rhizomorph::inspect;

/// Rhizomorph: many prioritized channels over one QUIC or WebSocket connection.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode frames from a hex dump (argument, file, or `-` for stdin) into readable lines.
    ///
    /// With no input, encodes and decodes a sample conversation.
    Inspect {
        /// Hex bytes (spaces allowed), or `@path` to read hex from a file, or `-` for stdin.
        input: Vec<String>,
        /// The receiver's MAX_FRAME_PAYLOAD (wire.md §3.3).
        #[arg(long, default_value_t = Settings::default().max_frame_payload)]
        max_frame_payload: u64,
        /// The receiver's MAX_MESSAGE_SIZE (wire.md §3.3).
        #[arg(long, default_value_t = Settings::default().max_message_size)]
        max_message_size: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Inspect {
            input,
            max_frame_payload,
            max_message_size,
        } => {
            let limits = Settings::default()
                .with_max_frame_payload(max_frame_payload)
                .with_max_message_size(max_message_size);
            let bytes = match read_input(&input) {
                Ok(Some(bytes)) => bytes,
                Ok(None) => {
                    let demo = inspect::demo_conversation();
                    println!(
                        "sample conversation ({} bytes):\n{}\n",
                        demo.len(),
                        inspect::to_hex(&demo)
                    );
                    demo.to_vec()
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let lines = inspect::inspect(&bytes, limits);
            println!("  offset     len  frame");
            print!("{}", inspect::render(&lines));
            let failed = lines
                .iter()
                .any(|l| !matches!(l, inspect::InspectLine::Frame { .. }));
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}

fn read_input(input: &[String]) -> Result<Option<Vec<u8>>, String> {
    let text = match input {
        [] => return Ok(None),
        [one] if one == "-" => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("stdin: {e}"))?;
            s
        }
        [one] if one.starts_with('@') => {
            std::fs::read_to_string(&one[1..]).map_err(|e| format!("{}: {e}", &one[1..]))?
        }
        words => words.join(" "),
    };
    inspect::parse_hex(&text)
        .map(Some)
        .map_err(|e| e.to_string())
}
