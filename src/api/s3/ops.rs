//! Names the S3 operation of a request, for metrics, from its method, path, query keys and
//! the copy-source header. It never rejects anything: s3s does the real routing.

use http::{HeaderMap, Method};

/// The S3 operation name, or "Other".
pub fn op_name(method: &Method, path: &str, query: &str, headers: &HeaderMap) -> &'static str {
    let has = |k: &str| crate::http::query::has(query, k);
    let rest = path.trim_start_matches('/');
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    let m = method.as_str();
    match (bucket.is_empty(), key.is_empty(), m) {
        (true, _, "GET") => "ListBuckets",
        (false, true, "GET") if has("uploads") => "ListMultipartUploads",
        (false, true, "GET") if has("location") => "GetBucketLocation",
        (false, true, "GET") if has("versions") => "ListObjectVersions",
        (false, true, "GET") if has("versioning") => "GetBucketVersioning",
        (false, true, "GET") if query.contains("list-type=2") => "ListObjectsV2",
        (false, true, "GET") => "ListObjects",
        (false, true, "PUT") => "CreateBucket",
        (false, true, "DELETE") => "DeleteBucket",
        (false, true, "HEAD") => "HeadBucket",
        (false, true, "POST") if has("delete") => "DeleteObjects",
        (false, false, "GET") if has("uploadId") => "ListParts",
        (false, false, "GET") if has("attributes") => "GetObjectAttributes",
        (false, false, "GET") => "GetObject",
        (false, false, "HEAD") => "HeadObject",
        (false, false, "PUT") if has("uploadId") && headers.contains_key("x-amz-copy-source") => "UploadPartCopy",
        (false, false, "PUT") if has("uploadId") => "UploadPart",
        (false, false, "PUT") if headers.contains_key("x-amz-copy-source") => "CopyObject",
        (false, false, "PUT") => "PutObject",
        (false, false, "DELETE") if has("uploadId") => "AbortMultipartUpload",
        (false, false, "DELETE") => "DeleteObject",
        (false, false, "POST") if has("uploads") => "CreateMultipartUpload",
        (false, false, "POST") if has("uploadId") => "CompleteMultipartUpload",
        _ => "Other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_common_operations() {
        let h = HeaderMap::new();
        let mut copy = HeaderMap::new();
        copy.insert("x-amz-copy-source", "b/k".parse().unwrap());
        let cases = [
            (Method::GET, "/", "", &h, "ListBuckets"),
            (Method::GET, "/b", "list-type=2&prefix=a", &h, "ListObjectsV2"),
            (Method::GET, "/b/", "", &h, "ListObjects"),
            (Method::PUT, "/b", "", &h, "CreateBucket"),
            (Method::POST, "/b", "delete", &h, "DeleteObjects"),
            (Method::GET, "/b/k/x.jpg", "X-Amz-Signature=1", &h, "GetObject"),
            (Method::PUT, "/b/k", "", &copy, "CopyObject"),
            (Method::PUT, "/b/k", "partNumber=1&uploadId=u", &h, "UploadPart"),
            (Method::POST, "/b/k", "uploads", &h, "CreateMultipartUpload"),
            (Method::POST, "/b/k", "uploadId=u", &h, "CompleteMultipartUpload"),
            (Method::PATCH, "/b/k", "", &h, "Other"),
        ];
        for (m, p, q, hd, want) in cases {
            assert_eq!(op_name(&m, p, q, hd), want, "{m} {p}?{q}");
        }
    }
}
