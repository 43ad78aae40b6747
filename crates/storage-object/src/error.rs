//! From `object_store` errors to the five failure classes.
//!
//! `object_store` maps the status codes it knows (404, 409, 412, 401, 403) to
//! its own variants and wraps the rest, and transport failures, in
//! `Generic`. Its retry error type is private, so the status of the rest is
//! read from the error text ("status code: 507 …"); transport failures are
//! found by downcasting to [`object_store::client::HttpError`].

use std::error::Error as _;

use ibs_storage::{ErrorKind, Remediation, StorageError};
use object_store::client::{HttpError, HttpErrorKind};

/// What an operator checks at an Azure Blob container.
pub(crate) static AZURE: Remediation = Remediation {
    connectivity: "Fix the network connectivity between the system and the Azure Storage endpoint \
        (the account's blob endpoint, or AZURE_STORAGE_ENDPOINT, resolves in DNS; HTTPS port 443 is reachable \
        through the firewall and any proxy, HTTPS_PROXY), then retry the backup.",
    path_not_found: "Check that the container exists in the storage account (and that the account name, \
        AZURE_STORAGE_ACCOUNT_NAME, is the right one), then update the backup storage path \
        (az://container/prefix) in the backup settings.",
    authentication: "Check the storage account key or SAS token (AZURE_STORAGE_ACCOUNT_KEY, \
        AZURE_STORAGE_SAS_KEY, or the other credential configured), and that it may read, write, list and \
        delete blobs in the container.",
};

/// What an operator checks at an S3 bucket.
pub(crate) static S3: Remediation = Remediation {
    connectivity: "Fix the network connectivity between the system and the S3 endpoint (the region's \
        endpoint, or AWS_ENDPOINT, resolves in DNS; HTTPS port 443 is reachable through the firewall and any \
        proxy, HTTPS_PROXY), then retry the backup.",
    path_not_found: "Check that the bucket exists in the region the system uses (AWS_REGION) or at the \
        endpoint (AWS_ENDPOINT), then update the backup storage path (s3://bucket/prefix) in the backup \
        settings.",
    authentication: "Check the access key (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, and the session \
        token if any), and that its policy allows reading, writing, listing and deleting objects in the \
        bucket.",
};

/// What an operator checks at an object store given as a store ([`crate::ObjectTarget::with_store`]).
pub(crate) static OBJECT: Remediation = Remediation {
    connectivity: "Fix the network connectivity between the system and the object store's endpoint (its \
        URL resolves in DNS; HTTPS port 443 is reachable through the firewall and any proxy), then retry \
        the backup.",
    path_not_found: "Check that the container or bucket exists at the object store, then update the \
        backup storage path in the backup settings.",
    authentication: "Check the object store's credentials, and that they may read, write, list and delete \
        objects in the container or bucket.",
};

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

/// The class of an `object_store` error (a refused conditional write is
/// [`ErrorKind::AlreadyExists`]).
pub(crate) fn classify(err: &object_store::Error) -> ErrorKind {
    use object_store::Error as E;
    let text = chain_text(err);
    let status = status_in(&text);
    if status == Some(507) || CAPACITY_CODES.iter().any(|code| text.contains(code)) {
        return ErrorKind::OutOfCapacity;
    }
    match err {
        E::NotFound { .. } => ErrorKind::PathNotFound,
        E::AlreadyExists { .. } | E::Precondition { .. } => ErrorKind::AlreadyExists,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => ErrorKind::Authentication,
        _ => {
            if let Some(kind) = transport_kind(err) {
                return match kind {
                    HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted => ErrorKind::Connectivity,
                    _ => ErrorKind::Other,
                };
            }
            match status {
                Some(401 | 403) => ErrorKind::Authentication,
                Some(404) => ErrorKind::PathNotFound,
                _ => ErrorKind::Other,
            }
        }
    }
}

/// A `StorageError` for a failed operation `op` on `path`.
pub(crate) fn map_error(op: &'static str, path: &str, err: object_store::Error) -> StorageError {
    let kind = classify(&err);
    if kind == ErrorKind::AlreadyExists {
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

/// An `s3://` location with no credentials: refused before any request, so
/// that the client never falls back to the instance-metadata endpoint
/// unasked. Names the variables; no value is ever shown.
pub(crate) fn missing_s3_credentials(label: &str) -> StorageError {
    StorageError::new(
        ErrorKind::Authentication,
        "cannot configure",
        label,
        "S3 client: no credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set; set them (and \
         AWS_REGION, or AWS_ENDPOINT for another S3 service), or set IBS_S3_INSTANCE_CREDENTIALS=1 to use \
         this machine's cloud instance credentials",
    )
    .with_retryable(false)
    .with_remediation(&S3)
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
    .with_remediation(if service == "S3" { &S3 } else { &AZURE })
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
            assert_eq!(classify(&err), kind, "{err}");
        }
        let exists = object_store::Error::AlreadyExists {
            path: "p".into(),
            source: "BlobAlreadyExists".into(),
        };
        assert_eq!(classify(&exists), ErrorKind::AlreadyExists);
        let mapped = map_error("cannot commit", "a/b", exists);
        assert_eq!(mapped.kind(), ErrorKind::AlreadyExists);
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
    fn azure_and_s3_word_their_own_endpoint_checks() {
        for (r, name) in [(&AZURE, "AZURE_STORAGE"), (&S3, "AWS_")] {
            let e = StorageError::new(ErrorKind::Connectivity, "cannot read", "p", "refused").with_remediation(r);
            let text = e.alert().remediation;
            assert!(
                text.contains("443") && text.contains(name) && !text.contains("445"),
                "{text}"
            );
        }
    }

    #[test]
    fn status_parsing() {
        assert_eq!(status_in("… status code: 416 Range Not Satisfiable"), Some(416));
        assert_eq!(status_in("status code: 4"), None);
        assert_eq!(status_in("nothing"), None);
    }
}
