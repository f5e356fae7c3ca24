//! The agent against in-memory doubles of its ports.
