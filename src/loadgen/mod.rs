//! TODO: loadgen
