//! tokd daemon library (being assembled).
