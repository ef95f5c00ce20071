//! TODO: observe
