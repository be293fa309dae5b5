//! Music generators.
