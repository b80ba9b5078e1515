//! tokd client library (being assembled).
