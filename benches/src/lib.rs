//! Benchmarks and load tools for Flin; see docs/benchmarks.md.
