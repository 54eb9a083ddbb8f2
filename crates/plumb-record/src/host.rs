//! Host and user identity, and what kind of stdin the child has.
