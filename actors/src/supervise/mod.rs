//! Supervision: the tree of supervisors (root, one per station), restart intensity
//! and escalation, stall detection, panic capture and the chaos hooks.

pub mod chaos;
pub mod intensity;
pub mod root;
pub mod tree;

#[cfg(test)]
mod tests;
