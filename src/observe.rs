//! Observability: what the gateway counts and how it is read, and where its log lines go.

pub mod audit;
pub mod metrics;
pub mod trace;

/// Sets the process's log subscriber up, once: lines on stderr filtered by `MCPGW_LOG`
/// (default `info`); pretty text, or one JSON object per line when `json` (or
/// `MCPGW_LOG_FORMAT=json`). Panics if a subscriber is already set.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MCPGW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = json || std::env::var("MCPGW_LOG_FORMAT").is_ok_and(|f| f == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().with_current_span(false).init();
    } else {
        // Colours only for a terminal: log files and collectors get plain text.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        builder.with_ansi(ansi).init();
    }
}
