//! Supervision: chaos hooks for now; panic capture lives in `station::run_guarded`.

pub mod chaos;
