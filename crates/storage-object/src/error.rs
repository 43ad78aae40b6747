//! From `object_store` errors to the five failure classes.
//!
//! `object_store` maps the status codes it knows (404, 409, 412, 401, 403) to
//! its own variants and wraps the rest, and transport failures, in
//! `Generic`. Its retry error type is private, so the status of the rest is
//! read from the error text ("status code: 507 …"); transport failures are
//! found by downcasting to [`object_store::client::HttpError`].

use std::error::Error as _;

use ibs_storage::{ErrorKind, StorageError};
use object_store::client::{HttpError, HttpErrorKind};

/// Error codes (Azure, S3, MinIO, Azurite) that mean "no room".
const CAPACITY_CODES: [&str; 6] = [
    "InsufficientStorage",
    "QuotaExceeded",
    "StorageFull",
    "AtSizeLimit",
    "AccountCapacityExceeded",
    "ShareSizeLimitReached",
];

/// The whole error chain as text (each source once).
fn chain_text(err: &object_store::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// The HTTP status in `object_store`'s message, if any.
fn status_in(text: &str) -> Option<u16> {
    let at = text.find("status code: ")? + "status code: ".len();
    text.get(at..at + 3)?.parse().ok()
}

fn transport_kind(err: &object_store::Error) -> Option<HttpErrorKind> {
    let mut source = err.source();
    while let Some(s) = source {
        if let Some(http) = s.downcast_ref::<HttpError>() {
            return Some(http.kind());
        }
        source = s.source();
    }
    None
}

/// The class of an `object_store` error, and whether it is a refused
/// conditional write ("already exists").
pub(crate) fn classify(err: &object_store::Error) -> (ErrorKind, bool) {
    use object_store::Error as E;
    let text = chain_text(err);
    let status = status_in(&text);
    if status == Some(507) || CAPACITY_CODES.iter().any(|code| text.contains(code)) {
        return (ErrorKind::OutOfCapacity, false);
    }
    match err {
        E::NotFound { .. } => (ErrorKind::PathNotFound, false),
        E::AlreadyExists { .. } | E::Precondition { .. } => (ErrorKind::Other, true),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => (ErrorKind::Authentication, false),
        _ => {
            if let Some(kind) = transport_kind(err) {
                return match kind {
                    HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted => (ErrorKind::Connectivity, false),
                    _ => (ErrorKind::Other, false),
                };
            }
            match status {
                Some(401 | 403) => (ErrorKind::Authentication, false),
                Some(404) => (ErrorKind::PathNotFound, false),
                _ => (ErrorKind::Other, false),
            }
        }
    }
}

/// A `StorageError` for a failed operation `op` on `path`.
pub(crate) fn map_error(op: &'static str, path: &str, err: object_store::Error) -> StorageError {
    let (kind, already_exists) = classify(&err);
    if already_exists {
        return StorageError::already_exists(op, path).with_source(err);
    }
    let text = chain_text(&err);
    // A 4xx (a range past the end, a bad request) fails the same way again.
    let client_error = status_in(&text).is_some_and(|s| (400..500).contains(&s));
    let retryable = match kind {
        ErrorKind::Connectivity => true,
        ErrorKind::Other => {
            !client_error
                && !matches!(
                    err,
                    object_store::Error::NotSupported { .. }
                        | object_store::Error::NotImplemented { .. }
                        | object_store::Error::InvalidPath { .. }
                )
        }
        _ => false,
    };
    StorageError::new(kind, op, path, text)
        .with_retryable(retryable)
        .with_source(err)
}

/// A client that cannot be built: missing account, region or credentials.
pub(crate) fn settings_error(label: &str, service: &str, err: object_store::Error) -> StorageError {
    let hint = if service == "S3" {
        "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_REGION, or AWS_ENDPOINT for another S3 service)"
    } else {
        "set AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY (or another credential; \
         AZURE_STORAGE_ENDPOINT for a non-default endpoint)"
    };
    StorageError::new(
        ErrorKind::Authentication,
        "cannot configure",
        label,
        format!("{service} client: {}; {hint}", chain_text(&err)),
    )
    .with_retryable(false)
    .with_source(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(msg: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "test",
            source: msg.to_owned().into(),
        }
    }

    #[test]
    fn statuses_and_codes_map_to_classes() {
        let cases = [
            (
                generic("Server returned non-2xx status code: 507 Insufficient Storage: "),
                ErrorKind::OutOfCapacity,
            ),
            (
                generic("Server returned non-2xx status code: 500 Internal Server Error: <Code>QuotaExceeded</Code>"),
                ErrorKind::OutOfCapacity,
            ),
            (
                generic("Server returned non-2xx status code: 503 Service Unavailable: "),
                ErrorKind::Other,
            ),
            (
                generic("Server returned non-2xx status code: 403 Forbidden: "),
                ErrorKind::Authentication,
            ),
            (
                object_store::Error::NotFound {
                    path: "p".into(),
                    source: "ContainerNotFound".into(),
                },
                ErrorKind::PathNotFound,
            ),
            (
                object_store::Error::PermissionDenied {
                    path: "p".into(),
                    source: "AuthenticationFailed".into(),
                },
                ErrorKind::Authentication,
            ),
            (
                object_store::Error::AlreadyExists {
                    path: "p".into(),
                    source: "409: MemoryExtentStoreAtSizeLimit".into(),
                },
                ErrorKind::OutOfCapacity,
            ),
            (
                object_store::Error::Generic {
                    store: "test",
                    source: Box::new(HttpError::new(
                        HttpErrorKind::Connect,
                        std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
                    )),
                },
                ErrorKind::Connectivity,
            ),
        ];
        for (err, kind) in cases {
            assert_eq!(classify(&err).0, kind, "{err}");
        }
        let exists = object_store::Error::AlreadyExists {
            path: "p".into(),
            source: "BlobAlreadyExists".into(),
        };
        assert_eq!(classify(&exists), (ErrorKind::Other, true));
        let mapped = map_error("cannot commit", "a/b", exists);
        assert!(mapped.is_already_exists());
        let range = map_error(
            "cannot read",
            "a/b",
            generic("Server returned non-2xx status code: 416 Range Not Satisfiable: "),
        );
        assert_eq!(range.kind(), ErrorKind::Other);
        assert!(!range.is_retryable(), "a bad range fails the same way again");
        let busy = map_error(
            "cannot read",
            "a/b",
            generic("Server returned non-2xx status code: 503 Service Unavailable: "),
        );
        assert!(busy.is_retryable());
    }

    #[test]
    fn status_parsing() {
        assert_eq!(status_in("… status code: 416 Range Not Satisfiable"), Some(416));
        assert_eq!(status_in("status code: 4"), None);
        assert_eq!(status_in("nothing"), None);
    }
}
