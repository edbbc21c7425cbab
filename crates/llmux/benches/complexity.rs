//! Complexity-router classification cost (filled in with the router).

fn main() {}
