//! TODO: ws
