//! Log output: human-readable lines (the default) or one JSON object per
//! line (`log_format = "json"`), both on stderr and filtered by `RUST_LOG`.

/// Installs the global subscriber. `json`: tracing-subscriber's JSON
/// formatter, with the fields of the enclosing spans (a call's `call_id`)
/// flattened into each line's `span`/`spans`; never ANSI colours.
pub fn init(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init: tests may call this more than once in one process.
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init()
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
}
