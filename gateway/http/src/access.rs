//! What each request of the HTTP API needs (the [`AccessPolicy`] the
//! security crate's access layer asks): open, a known client, or a scope.
//! One table for every route, so a new endpoint gets an answer here or
//! falls to "a known client" (never to "open").

use http::{Method, Uri};
use passerelle_security::{AccessPolicy, GatewayScope, Interaction, Permission, Requirement};

use crate::convert;
use crate::rest;
use crate::routes::Route;

#[derive(Clone, Copy, Default)]
pub struct HttpAccessPolicy;

fn fhir(resource_type: &str, interaction: Interaction) -> Requirement {
    Requirement::Permission(Permission::Fhir {
        resource_type: resource_type.to_string(),
        interaction,
    })
}

impl AccessPolicy for HttpAccessPolicy {
    fn requirement(&self, method: &Method, uri: &Uri) -> Requirement {
        let path = uri.path().trim_end_matches('/');
        let reads = matches!(*method, Method::GET | Method::HEAD);
        match Route::classify(path) {
            // What a load balancer and a client discovering the server ask.
            Route::Health | Route::Ready => Requirement::Open,
            Route::FhirMetadata => Requirement::Open,
            Route::FhirTypeChild if path == convert::DEFINITION_PATH => Requirement::Open,
            Route::Metrics => Requirement::Permission(Permission::Gateway(GatewayScope::Metrics)),
            Route::Admin => Requirement::Permission(Permission::Gateway(GatewayScope::Admin)),
            Route::Hl7v2 => Requirement::Permission(Permission::Gateway(GatewayScope::Hl7v2)),
            Route::Hprim => Requirement::Permission(Permission::Gateway(GatewayScope::Hprim)),
            Route::Cda => Requirement::Permission(Permission::Gateway(GatewayScope::Cda)),
            Route::FhirSystemOperation if path == convert::OPERATION_PATH => {
                Requirement::Permission(Permission::Gateway(GatewayScope::Convert))
            }
            // A transaction: each entry is checked against the client's
            // scopes by the repository.
            Route::FhirBase if *method == Method::POST => Requirement::Authenticated,
            Route::FhirBase | Route::FhirSystemHistory => {
                Requirement::Permission(Permission::FhirAnyType(Interaction::Search))
            }
            // Creates, updates and deletes run as one-entry transactions,
            // whose entry the repository checks against the scopes.
            _ if Route::writes(method, path) => Requirement::Authenticated,
            Route::FhirType | Route::FhirTypeChild => match rest::interaction(path) {
                Some((resource_type, rest::Interaction::Search))
                    if reads || *method == Method::POST =>
                {
                    fhir(resource_type, Interaction::Search)
                }
                // SMART v2: a type's history is a search ("s").
                Some((resource_type, rest::Interaction::TypeHistory)) if reads => {
                    fhir(resource_type, Interaction::Search)
                }
                Some((
                    resource_type,
                    rest::Interaction::Read(_)
                    | rest::Interaction::History(_)
                    | rest::Interaction::Vread(..),
                )) if reads => fhir(resource_type, Interaction::Read),
                // `$summary` and `$everything` answer resources of every
                // type the patient has.
                Some(("Patient", rest::Interaction::Operation(_, "$summary" | "$everything"))) => {
                    Requirement::Permission(Permission::FhirAnyType(Interaction::Read))
                }
                Some(("Patient", rest::Interaction::Operation(None, "$ihe-pix"))) => {
                    fhir("Patient", Interaction::Search)
                }
                _ => Requirement::Authenticated,
            },
            Route::FhirSystemOperation | Route::FhirUnknown | Route::NotFound => {
                Requirement::Authenticated
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requirement(method: &str, uri: &str) -> String {
        let method: Method = method.parse().unwrap();
        let uri: Uri = uri.parse().unwrap();
        match HttpAccessPolicy.requirement(&method, &uri) {
            Requirement::Open => "open".into(),
            Requirement::Authenticated => "client".into(),
            Requirement::Permission(permission) => permission.to_string(),
        }
    }

    #[test]
    fn every_route_has_its_requirement() {
        for (method, uri, expected) in [
            ("GET", "/health", "open"),
            ("GET", "/ready", "open"),
            ("GET", "/fhir/metadata", "open"),
            ("GET", "/metrics", "passerelle/metrics"),
            ("GET", "/admin/messages", "passerelle/admin"),
            ("POST", "/admin/purge?before=2020-01-01", "passerelle/admin"),
            ("POST", "/hl7v2", "passerelle/hl7v2"),
            ("POST", "/hprim", "passerelle/hprim"),
            ("POST", "/cda", "passerelle/cda"),
            ("POST", "/fhir/$convert-data", "passerelle/convert"),
            ("POST", "/fhir", "client"),
            ("GET", "/fhir?_type=Patient", "system/*.s"),
            ("GET", "/fhir/Patient?gender=female", "system/Patient.s"),
            ("POST", "/fhir/Patient/_search", "system/Patient.s"),
            ("GET", "/fhir/Patient/1", "system/Patient.r"),
            ("GET", "/fhir/Patient/_history", "system/Patient.s"),
            ("GET", "/fhir/_history", "system/*.s"),
            ("HEAD", "/fhir/Patient/1", "system/Patient.r"),
            (
                "GET",
                "/fhir/Observation/1/_history",
                "system/Observation.r",
            ),
            (
                "GET",
                "/fhir/Observation/1/_history/2",
                "system/Observation.r",
            ),
            ("GET", "/fhir/Patient/1/$everything", "system/*.r"),
            ("GET", "/fhir/Patient/$summary?identifier=x", "system/*.r"),
            (
                "GET",
                "/fhir/Patient/$ihe-pix?sourceIdentifier=x",
                "system/Patient.s",
            ),
            ("POST", "/fhir/Patient", "client"),
            ("PUT", "/fhir/Patient/1", "client"),
            ("PUT", "/fhir/Patient?identifier=x", "client"),
            ("DELETE", "/fhir/Patient?identifier=x", "client"),
            ("DELETE", "/fhir/Patient/1", "client"),
            ("GET", "/fhir/Nonsense", "client"),
            ("GET", "/nowhere", "client"),
        ] {
            assert_eq!(requirement(method, uri), expected, "{method} {uri}");
        }
    }
}
