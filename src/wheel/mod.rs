//! TODO: wheel
