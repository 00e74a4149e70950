//! Route classification: turns a request path into a `Route` with a bounded
//! label. Telemetry labels by route template, never by raw path, because a
//! path can carry a resource id or other data from the client.

use passerelle_fhir::is_r4_resource_type;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    Ready,
    Metrics,
    Hl7v2,
    /// `POST /hprim`: HPRIM Santé and HPRIM Net files.
    Hprim,
    /// `POST /cda`: CDA R2 documents.
    Cda,
    /// `/admin` and below (loopback only).
    Admin,
    FhirMetadata,
    /// `/fhir` itself (batch/transaction, whole-system search).
    FhirBase,
    /// `/fhir/_history`: every version of every resource.
    FhirSystemHistory,
    /// `/fhir/$operation` at the system level.
    FhirSystemOperation,
    /// `/fhir/{type}` for a known R4 resource type.
    FhirType,
    /// `/fhir/{type}/...` below a known resource type.
    FhirTypeChild,
    /// `/fhir/...` naming no known resource type.
    FhirUnknown,
    NotFound,
}

impl Route {
    pub fn classify(path: &str) -> Route {
        let path = path.trim_end_matches('/');
        match path {
            "/health" => return Route::Health,
            "/ready" => return Route::Ready,
            "/metrics" => return Route::Metrics,
            "/hl7v2" => return Route::Hl7v2,
            "/hprim" => return Route::Hprim,
            "/cda" => return Route::Cda,
            "/fhir" => return Route::FhirBase,
            "/fhir/metadata" => return Route::FhirMetadata,
            "/fhir/_history" => return Route::FhirSystemHistory,
            _ => {}
        }
        if path == "/admin" || path.starts_with("/admin/") {
            return Route::Admin;
        }
        let Some(rest) = path.strip_prefix("/fhir/") else {
            return Route::NotFound;
        };
        let mut segments = rest.split('/');
        let first = segments.next().unwrap_or("");
        if first.starts_with('$') {
            return Route::FhirSystemOperation;
        }
        if !is_r4_resource_type(first) {
            return Route::FhirUnknown;
        }
        match segments.next() {
            None => Route::FhirType,
            Some(_) => Route::FhirTypeChild,
        }
    }

    /// Whether `method` on `path` writes the repository: a transaction
    /// (`POST /fhir`), a create (`POST /fhir/{type}`), an update or a
    /// delete (`PUT`/`DELETE` on a type or below it). Such a request is
    /// never cut off once it may have committed (see the timeout layer).
    pub fn writes(method: &http::Method, path: &str) -> bool {
        let path = path.trim_end_matches('/');
        match Route::classify(path) {
            Route::FhirBase => *method == http::Method::POST,
            Route::FhirType => matches!(
                *method,
                http::Method::POST | http::Method::PUT | http::Method::DELETE
            ),
            Route::FhirTypeChild => matches!(
                *method,
                http::Method::PUT | http::Method::DELETE | http::Method::PATCH
            ),
            _ => false,
        }
    }

    /// The metrics label: a template, never the raw path.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Health => "/health",
            Route::Ready => "/ready",
            Route::Metrics => "/metrics",
            Route::Hl7v2 => "/hl7v2",
            Route::Hprim => "/hprim",
            Route::Cda => "/cda",
            Route::Admin => "/admin",
            Route::FhirMetadata => "/fhir/metadata",
            Route::FhirBase => "/fhir",
            Route::FhirSystemHistory => "/fhir/_history",
            Route::FhirSystemOperation => "/fhir/$operation",
            Route::FhirType => "/fhir/{type}",
            Route::FhirTypeChild => "/fhir/{type}/*",
            Route::FhirUnknown => "/fhir/*",
            Route::NotFound => "unmatched",
        }
    }

    pub fn is_fhir(&self) -> bool {
        matches!(
            self,
            Route::FhirMetadata
                | Route::FhirBase
                | Route::FhirSystemHistory
                | Route::FhirSystemOperation
                | Route::FhirType
                | Route::FhirTypeChild
                | Route::FhirUnknown
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths() {
        assert_eq!(Route::classify("/health"), Route::Health);
        assert_eq!(Route::classify("/fhir/metadata"), Route::FhirMetadata);
        assert_eq!(Route::classify("/fhir/"), Route::FhirBase);
        assert_eq!(Route::classify("/fhir/Patient"), Route::FhirType);
        assert_eq!(Route::classify("/fhir/Patient/123"), Route::FhirTypeChild);
        assert_eq!(
            Route::classify("/fhir/Patient/123/_history/2"),
            Route::FhirTypeChild
        );
        assert_eq!(Route::classify("/fhir/Nonsense"), Route::FhirUnknown);
        assert_eq!(
            Route::classify("/fhir/$convert-data"),
            Route::FhirSystemOperation
        );
        assert_eq!(Route::classify("/nope"), Route::NotFound);
    }

    #[test]
    fn labels_never_carry_path_data() {
        assert_eq!(
            Route::classify("/fhir/Patient/DUPONT-Jean").label(),
            "/fhir/{type}/*"
        );
        assert_eq!(Route::classify("/DUPONT").label(), "unmatched");
    }
}
