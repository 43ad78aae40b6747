//! Cross-crate tests of the ibs workspace live in `tests/`; this library is empty.
