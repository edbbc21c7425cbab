//! The `llmux` binary: a thin shell over [`llmux::cli`].

fn main() -> std::process::ExitCode {
    llmux::cli::main()
}
