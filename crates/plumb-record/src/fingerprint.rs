//! The software fingerprint of a run, captured cheaply and cached by content
//! key.
