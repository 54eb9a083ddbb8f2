//! plumb storage.
