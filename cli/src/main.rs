fn main() -> std::process::ExitCode {
    causeway_runtime::run(causeway::KubeSources)
}
