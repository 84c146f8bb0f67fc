//! Throughput bench (placeholder until written).
fn main() {}
