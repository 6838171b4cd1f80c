//! Thin Rust client for quantum_flow.
