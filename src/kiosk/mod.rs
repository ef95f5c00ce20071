//! TODO: kiosk
