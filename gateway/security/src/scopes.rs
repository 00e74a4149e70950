//! SMART scopes: what a client's grants say it may do, parsed once from
//! their text, and the one test of a [`Permission`] against them.
//!
//! Clients are systems (SMART Backend Services), so only `system/` scopes
//! are taken: SMART v2 (`system/Patient.rs`, `system/*.cruds`, letters in
//! the order `c r u d s`) and their v1 spellings (`.read`, `.write`, `.*`).
//! What is not a FHIR interaction has a scope of this gateway's own:
//! `passerelle/admin`, `passerelle/metrics`, `passerelle/hl7v2` (send
//! HL7 v2 messages) and `passerelle/convert` (`$convert-data`).

use std::fmt;

/// A FHIR REST interaction, by the letter SMART v2 gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interaction {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Interaction {
    const ALL: [Interaction; 5] = [
        Interaction::Create,
        Interaction::Read,
        Interaction::Update,
        Interaction::Delete,
        Interaction::Search,
    ];

    pub fn letter(self) -> char {
        match self {
            Interaction::Create => 'c',
            Interaction::Read => 'r',
            Interaction::Update => 'u',
            Interaction::Delete => 'd',
            Interaction::Search => 's',
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A scope of this gateway's own (not a FHIR interaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GatewayScope {
    Admin,
    Metrics,
    Hl7v2,
    Convert,
    /// Sending HPRIM files (`POST /hprim`).
    Hprim,
    /// Sending CDA R2 documents (`POST /cda`).
    Cda,
}

impl GatewayScope {
    pub const ALL: [GatewayScope; 6] = [
        GatewayScope::Admin,
        GatewayScope::Metrics,
        GatewayScope::Hl7v2,
        GatewayScope::Convert,
        GatewayScope::Hprim,
        GatewayScope::Cda,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GatewayScope::Admin => "passerelle/admin",
            GatewayScope::Metrics => "passerelle/metrics",
            GatewayScope::Hl7v2 => "passerelle/hl7v2",
            GatewayScope::Convert => "passerelle/convert",
            GatewayScope::Hprim => "passerelle/hprim",
            GatewayScope::Cda => "passerelle/cda",
        }
    }
}

/// What one request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    /// An interaction on one resource type.
    Fhir {
        resource_type: String,
        interaction: Interaction,
    },
    /// An interaction on every resource type (`$everything`, `$summary`
    /// and whole-system search answer resources of any type).
    FhirAnyType(Interaction),
    Gateway(GatewayScope),
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Permission::Fhir {
                resource_type,
                interaction,
            } => write!(f, "system/{resource_type}.{}", interaction.letter()),
            Permission::FhirAnyType(interaction) => write!(f, "system/*.{}", interaction.letter()),
            Permission::Gateway(scope) => f.write_str(scope.as_str()),
        }
    }
}

/// A scope text that is not one this gateway grants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scope `{scope}`: {reason}")]
pub struct ScopeError {
    pub scope: String,
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Types {
    All,
    One(String),
}

/// A client's granted scopes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    fhir: Vec<(Types, u8)>,
    gateway: Vec<GatewayScope>,
    texts: Vec<String>,
}

impl Scopes {
    /// Parses scope texts (each may hold several, space-separated, as in
    /// an OAuth2 `scope` parameter).
    pub fn parse<S: AsRef<str>>(texts: &[S]) -> Result<Scopes, ScopeError> {
        let mut scopes = Scopes::default();
        for scope in texts.iter().flat_map(|t| t.as_ref().split_whitespace()) {
            scopes.add(scope)?;
        }
        Ok(scopes)
    }

    /// Every scope this gateway knows (the local admin's).
    pub fn everything() -> Scopes {
        let mut texts = vec!["system/*.cruds".to_string()];
        texts.extend(GatewayScope::ALL.iter().map(|s| s.as_str().to_string()));
        Scopes {
            fhir: vec![(Types::All, 0b1_1111)],
            gateway: GatewayScope::ALL.to_vec(),
            texts,
        }
    }

    fn add(&mut self, scope: &str) -> Result<(), ScopeError> {
        let fail = |reason| ScopeError {
            scope: scope.chars().take(80).collect(),
            reason,
        };
        if let Some(gateway) = GatewayScope::ALL.iter().find(|g| g.as_str() == scope) {
            if !self.gateway.contains(gateway) {
                self.gateway.push(*gateway);
                self.texts.push(scope.to_string());
            }
            return Ok(());
        }
        let Some(rest) = scope.strip_prefix("system/") else {
            return Err(
                if scope.starts_with("patient/") || scope.starts_with("user/") {
                    fail("clients are systems: use a system/ scope")
                } else {
                    fail("not a SMART system scope nor a passerelle/ scope")
                },
            );
        };
        if rest.contains('?') {
            return Err(fail("scopes with search restrictions are not supported"));
        }
        let Some((resource_type, permissions)) = rest.split_once('.') else {
            return Err(fail("expected system/<Type>.<permissions>"));
        };
        let types = match resource_type {
            "*" => Types::All,
            name if is_type_name(name) => Types::One(name.to_string()),
            _ => return Err(fail("not a resource type name")),
        };
        let bits = match permissions {
            "read" => Interaction::Read.bit() | Interaction::Search.bit(),
            "write" => {
                Interaction::Create.bit() | Interaction::Update.bit() | Interaction::Delete.bit()
            }
            "*" => 0b1_1111,
            letters => v2_bits(letters).ok_or_else(|| {
                fail("permissions are c, r, u, d, s in that order (or read, write, *)")
            })?,
        };
        self.fhir.push((types, bits));
        self.texts.push(scope.to_string());
        Ok(())
    }

    /// Whether these scopes allow `permission`.
    pub fn permits(&self, permission: &Permission) -> bool {
        match permission {
            Permission::Gateway(scope) => self.gateway.contains(scope),
            Permission::Fhir {
                resource_type,
                interaction,
            } => self.fhir.iter().any(|(types, bits)| {
                bits & interaction.bit() != 0
                    && match types {
                        Types::All => true,
                        Types::One(name) => name == resource_type,
                    }
            }),
            Permission::FhirAnyType(interaction) => self
                .fhir
                .iter()
                .any(|(types, bits)| *types == Types::All && bits & interaction.bit() != 0),
        }
    }

    /// Whether any scope allows some FHIR interaction other than reading
    /// (a transaction Bundle needs one; each entry is checked on its own).
    pub fn may_write_fhir(&self) -> bool {
        let write =
            Interaction::Create.bit() | Interaction::Update.bit() | Interaction::Delete.bit();
        self.fhir.iter().any(|(_, bits)| bits & write != 0)
    }

    /// Whether `cap` allows everything these scopes allow (a token's
    /// scopes against what its issuer may grant).
    pub fn within(&self, cap: &Scopes) -> bool {
        self.gateway
            .iter()
            .all(|scope| cap.permits(&Permission::Gateway(*scope)))
            && self.fhir.iter().all(|(types, bits)| {
                Interaction::ALL
                    .iter()
                    .filter(|interaction| bits & interaction.bit() != 0)
                    .all(|interaction| match types {
                        Types::All => cap.permits(&Permission::FhirAnyType(*interaction)),
                        Types::One(name) => cap.permits(&Permission::Fhir {
                            resource_type: name.clone(),
                            interaction: *interaction,
                        }),
                    })
            })
    }

    /// The scopes as they were granted, for listing.
    pub fn texts(&self) -> &[String] {
        &self.texts
    }
}

fn is_type_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_alphanumeric())
        && name.len() <= 64
}

/// SMART v2 letters: a non-empty subsequence of `cruds`.
fn v2_bits(letters: &str) -> Option<u8> {
    let mut bits = 0;
    let mut order = Interaction::ALL.iter();
    for letter in letters.chars() {
        let interaction = order.by_ref().find(|i| i.letter() == letter)?;
        bits |= interaction.bit();
    }
    (bits != 0).then_some(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fhir(resource_type: &str, interaction: Interaction) -> Permission {
        Permission::Fhir {
            resource_type: resource_type.into(),
            interaction,
        }
    }

    #[test]
    fn v2_letters_grant_what_they_say() {
        let scopes = Scopes::parse(&["system/Patient.rs system/Observation.c"]).unwrap();
        assert!(scopes.permits(&fhir("Patient", Interaction::Read)));
        assert!(scopes.permits(&fhir("Patient", Interaction::Search)));
        assert!(!scopes.permits(&fhir("Patient", Interaction::Update)));
        assert!(scopes.permits(&fhir("Observation", Interaction::Create)));
        assert!(!scopes.permits(&fhir("Observation", Interaction::Read)));
        assert!(!scopes.permits(&fhir("Encounter", Interaction::Read)));
        assert!(!scopes.permits(&Permission::FhirAnyType(Interaction::Read)));
        assert!(!scopes.permits(&Permission::Gateway(GatewayScope::Admin)));
        assert!(scopes.may_write_fhir());
    }

    #[test]
    fn wildcards_and_v1_spellings() {
        let scopes = Scopes::parse(&["system/*.read", "passerelle/metrics"]).unwrap();
        assert!(scopes.permits(&fhir("Condition", Interaction::Search)));
        assert!(scopes.permits(&Permission::FhirAnyType(Interaction::Read)));
        assert!(!scopes.permits(&fhir("Condition", Interaction::Create)));
        assert!(scopes.permits(&Permission::Gateway(GatewayScope::Metrics)));
        assert!(!scopes.may_write_fhir());
        let write = Scopes::parse(&["system/Patient.write"]).unwrap();
        assert!(write.permits(&fhir("Patient", Interaction::Delete)));
        assert!(!write.permits(&fhir("Patient", Interaction::Read)));
        let everything = Scopes::everything();
        for scope in GatewayScope::ALL {
            assert!(everything.permits(&Permission::Gateway(scope)));
        }
        assert_eq!(Scopes::parse(everything.texts()).unwrap(), everything);
    }

    #[test]
    fn scopes_this_gateway_does_not_grant_are_refused() {
        for bad in [
            "patient/Patient.rs",
            "user/*.cruds",
            "system/Patient.sr",
            "system/Patient.rr",
            "system/Patient.",
            "system/patient.rs",
            "system/Patient.rs?category=x",
            "system/Patient",
            "openid",
            "passerelle/root",
        ] {
            assert!(Scopes::parse(&[bad]).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn permissions_print_as_the_scope_that_grants_them() {
        assert_eq!(
            fhir("Patient", Interaction::Search).to_string(),
            "system/Patient.s"
        );
        assert_eq!(
            Permission::FhirAnyType(Interaction::Read).to_string(),
            "system/*.r"
        );
        assert_eq!(
            Permission::Gateway(GatewayScope::Admin).to_string(),
            "passerelle/admin"
        );
    }
}
