//! TODO: consult
