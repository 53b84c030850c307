//! Placeholder for the MCP load generator (issue: performance harness).

fn main() {
    eprintln!(
        "mcpgw-load is not built yet: the load generator lands with the performance-harness issue"
    );
    std::process::exit(2);
}
