//! Protocol front ends. Today: the S3 API. Plain HTTP serving for browsers (issue 5) and
//! the admin endpoints (issue 7) will sit beside it.

pub mod admin;
pub mod replication;
pub mod s3;
pub mod status;
