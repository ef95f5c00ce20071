//! TODO: scope
