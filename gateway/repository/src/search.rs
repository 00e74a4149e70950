//! FHIR search over the repository: a query string becomes a
//! [`SearchRequest`] (parameters AND-ed, comma-separated values OR-ed,
//! prefixes and modifiers read), which becomes one SQL statement over the
//! index table, written once for both backends.

use super::dates;
use super::params::{self, normalise, ParamKind};
use crate::networks::Visibility;
use passerelle_fhir::elements::{Summary, UnknownSummary};
use passerelle_storage::sql::SqlValue;

/// Results per page when `_count` is absent, and the most a page holds.
pub const DEFAULT_COUNT: usize = 20;
pub const MAX_COUNT: usize = 1000;
/// Characters of resources one search answer carries (its matches, then
/// its includes): a page that would hold more ends early, with a `next`
/// link where the rest begins, so an answer's memory stays bounded
/// whatever `_count` asks for and however large the stored resources.
pub const MAX_PAGE_CHARS: usize = 32 * 1024 * 1024;
/// Largest `_offset` (paging deeper than this is refused, 400): an offset
/// is a scan of every row before it, and beyond `i64` it would wrap.
pub const MAX_OFFSET: usize = 100_000;
/// Parameters one search may carry (a repeated parameter counts each
/// time): each is a join, and a URL of thousands held a read connection
/// for tens of seconds.
pub const MAX_PARAMETERS: usize = 64;
/// Comma-separated values (OR-ed) one parameter may carry.
pub const MAX_VALUES: usize = 100;
/// `_include` and `_revinclude` one search may carry, together.
pub const MAX_INCLUDES: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SearchError {
    #[error("unknown search parameter '{0}' (send Prefer: handling=lenient to have it ignored)")]
    UnknownParameter(String),
    #[error("{what}: at most {limit} in one search")]
    TooMany { what: &'static str, limit: usize },
    #[error("search parameter '{param}': {reason}")]
    InvalidValue { param: String, reason: String },
}

/// One way a value of a parameter matches.
#[derive(Debug, Clone, PartialEq)]
enum Alternative {
    Token {
        system: Option<String>,
        code: Option<String>,
    },
    Prefix(String),
    Contains(String),
    Exact(String),
    Date {
        prefix: &'static str,
        low: String,
        high: String,
    },
    Reference(String),
    /// A bare id for a reference parameter that accepts several types.
    AnyTypeId(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Clause {
    Ids(Vec<String>),
    Index {
        param: &'static str,
        negated: bool,
        alternatives: Vec<Alternative>,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct SortKey {
    param: &'static str,
    kind: ParamKind,
    descending: bool,
}

/// `_include` / `_revinclude`: resources of `source_type` pointing through
/// `param`.
#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    pub source_type: String,
    pub param: &'static str,
}

/// A parsed search on one resource type.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    pub resource_type: String,
    clauses: Vec<Clause>,
    sort: Vec<SortKey>,
    pub count: usize,
    pub offset: usize,
    /// `_summary=count`: the total only.
    pub count_only: bool,
    pub includes: Vec<Include>,
    pub revincludes: Vec<Include>,
    /// The parameters used, as they go into `self` and paging links.
    pub used: Vec<(String, String)>,
    /// Whose patients the matches may be about: nobody's until the
    /// caller says ([`SearchRequest::visible_to`]), so that a search
    /// nobody scoped finds no patient data.
    pub visibility: Visibility,
}

/// Parameters that shape the answer, not the match.
const RESULT_PARAMETERS: &[&str] = &["_format", "_pretty", "_elements", "_total"];

impl SearchRequest {
    /// Reads `pairs` (decoded). Unknown parameters are an error when
    /// `strict`, and otherwise ignored (left out of the `self` link, as FHIR
    /// says a server shows what it used).
    pub fn parse(
        resource_type: &str,
        pairs: &[(String, String)],
        strict: bool,
    ) -> Result<SearchRequest, SearchError> {
        let mut request = SearchRequest {
            resource_type: resource_type.to_string(),
            clauses: Vec::new(),
            sort: Vec::new(),
            count: DEFAULT_COUNT,
            offset: 0,
            count_only: false,
            includes: Vec::new(),
            revincludes: Vec::new(),
            used: Vec::new(),
            visibility: Visibility::Networks(Vec::new()),
        };
        if pairs.len() > MAX_PARAMETERS {
            return Err(SearchError::TooMany {
                what: "search parameters",
                limit: MAX_PARAMETERS,
            });
        }
        for (key, value) in pairs {
            if value.split(',').count() > MAX_VALUES {
                return Err(SearchError::TooMany {
                    what: "comma-separated values of one parameter",
                    limit: MAX_VALUES,
                });
            }
            let (name, modifier) = match key.split_once(':') {
                Some((name, modifier)) => (name, Some(modifier)),
                None => (key.as_str(), None),
            };
            let invalid = |reason: &str| SearchError::InvalidValue {
                param: key.clone(),
                reason: reason.to_string(),
            };
            match name {
                "_count" => {
                    let count: usize = value.parse().map_err(|_| invalid("not a number"))?;
                    request.count = count.min(MAX_COUNT);
                    continue;
                }
                "_offset" => {
                    let offset: usize = value.parse().map_err(|_| invalid("not a number"))?;
                    if offset > MAX_OFFSET {
                        return Err(invalid(&format!(
                            "deeper than the largest offset, {MAX_OFFSET}; narrow the search"
                        )));
                    }
                    request.offset = offset;
                    continue;
                }
                "_summary" => {
                    // Every other value shapes each resource, which the
                    // HTTP layer does after the search (`elements`).
                    let summary: Summary = value.parse().map_err(|error: UnknownSummary| {
                        invalid(&format!(
                            "must be true, text, data, count or false, not '{}'",
                            error.0
                        ))
                    })?;
                    if summary == Summary::Count {
                        request.count_only = true;
                    }
                }
                "_sort" => {
                    for field in value.split(',').filter(|f| !f.is_empty()) {
                        let (descending, field) = match field.strip_prefix('-') {
                            Some(field) => (true, field),
                            None => (false, field),
                        };
                        let kind = if field == "_lastUpdated" {
                            ParamKind::Date
                        } else {
                            match params::find(resource_type, field) {
                                Some(param) if param.kind != ParamKind::Reference => param.kind,
                                _ => return Err(invalid(&format!("cannot sort by '{field}'"))),
                            }
                        };
                        let param = if field == "_lastUpdated" {
                            "_lastUpdated"
                        } else {
                            params::find(resource_type, field).map_or("", |p| p.name)
                        };
                        request.sort.push(SortKey {
                            param,
                            kind,
                            descending,
                        });
                    }
                }
                "_include" | "_revinclude" => {
                    let mut parts = value.split(':');
                    let source_type = parts.next().unwrap_or("");
                    let param_name = parts.next().unwrap_or("");
                    let param = params::find(source_type, param_name)
                        .filter(|p| p.kind == ParamKind::Reference)
                        .ok_or_else(|| invalid(&format!("no reference parameter '{value}'")))?;
                    let include = Include {
                        source_type: source_type.to_string(),
                        param: param.name,
                    };
                    if request.includes.len() + request.revincludes.len() >= MAX_INCLUDES {
                        return Err(SearchError::TooMany {
                            what: "_include and _revinclude",
                            limit: MAX_INCLUDES,
                        });
                    }
                    if name == "_include" {
                        if source_type != resource_type {
                            return Err(invalid("must name the searched type"));
                        }
                        request.includes.push(include);
                    } else {
                        request.revincludes.push(include);
                    }
                }
                "_id" => {
                    request
                        .clauses
                        .push(Clause::Ids(value.split(',').map(str::to_string).collect()));
                }
                "_lastUpdated" => {
                    request
                        .clauses
                        .push(date_clause("_lastUpdated", value, &invalid)?);
                }
                _ if RESULT_PARAMETERS.contains(&name) => continue,
                _ => {
                    let Some(param) = params::find(resource_type, name) else {
                        if strict {
                            return Err(SearchError::UnknownParameter(key.clone()));
                        }
                        continue;
                    };
                    let clause = match (param.kind, modifier) {
                        (ParamKind::Date, None) => date_clause(param.name, value, &invalid)?,
                        (ParamKind::Token, None | Some("not")) => Clause::Index {
                            param: param.name,
                            negated: modifier.is_some(),
                            alternatives: values(value)
                                .map(|v| {
                                    let (system, code) = match v.split_once('|') {
                                        Some((system, code)) => (Some(system), code),
                                        None => (None, v.as_str()),
                                    };
                                    Alternative::Token {
                                        system: system.map(str::to_string),
                                        code: (!code.is_empty()).then(|| code.to_string()),
                                    }
                                })
                                .collect(),
                        },
                        (ParamKind::String, None | Some("exact") | Some("contains")) => {
                            Clause::Index {
                                param: param.name,
                                negated: false,
                                alternatives: values(value)
                                    .map(|v| match modifier {
                                        Some("exact") => Alternative::Exact(v),
                                        Some("contains") => Alternative::Contains(normalise(&v)),
                                        _ => Alternative::Prefix(normalise(&v)),
                                    })
                                    .collect(),
                            }
                        }
                        (ParamKind::Reference, None) => Clause::Index {
                            param: param.name,
                            negated: false,
                            alternatives: values(value)
                                .map(|v| match params::relative_reference(&v) {
                                    Some(relative) => Ok(Alternative::Reference(relative)),
                                    None if !v.contains('/') && !v.is_empty() => {
                                        Ok(match param.target {
                                            Some(target) => {
                                                Alternative::Reference(format!("{target}/{v}"))
                                            }
                                            None => Alternative::AnyTypeId(v),
                                        })
                                    }
                                    None => Err(invalid("not a reference")),
                                })
                                .collect::<Result<_, _>>()?,
                        },
                        (_, Some(modifier)) => {
                            if strict {
                                return Err(invalid(&format!(
                                    "modifier ':{modifier}' not supported"
                                )));
                            }
                            continue;
                        }
                    };
                    request.clauses.push(clause);
                }
            }
            request.used.push((key.clone(), value.clone()));
        }
        Ok(request)
    }

    /// The same search, for a reader who sees `visibility`.
    pub fn visible_to(mut self, visibility: Visibility) -> SearchRequest {
        self.visibility = visibility;
        self
    }

    /// `SELECT` of the page: columns id, version, last_updated_ms, deleted,
    /// resource.
    pub fn page_sql(&self) -> (String, Vec<SqlValue>) {
        self.page_select(
            "r.id, r.version, r.last_updated_ms, r.deleted, r.resource",
            self.count,
        )
    }

    /// `SELECT` of the page's ids only (a conditional write's matches: the
    /// resources themselves are not read).
    pub fn page_ids_sql(&self) -> (String, Vec<SqlValue>) {
        self.page_select("r.id", self.count)
    }

    /// `SELECT` of the page's resource sizes (characters), in page order.
    pub fn page_sizes_sql(&self) -> (String, Vec<SqlValue>) {
        self.page_select("length(r.resource)", self.count)
    }

    /// [`Self::page_sql`] for the first `count` rows of the page only.
    pub fn page_sql_first(&self, count: usize) -> (String, Vec<SqlValue>) {
        self.page_select(
            "r.id, r.version, r.last_updated_ms, r.deleted, r.resource",
            count,
        )
    }

    fn page_select(&self, columns: &str, count: usize) -> (String, Vec<SqlValue>) {
        let mut params = vec![SqlValue::from(self.resource_type.as_str())];
        let conditions = self.conditions(&mut params);
        let mut order = Vec::new();
        for key in &self.sort {
            params.push(SqlValue::from(key.param));
            let n = params.len();
            let (column, aggregate) = match (key.kind, key.descending) {
                (ParamKind::Date, false) => ("low", "min"),
                (ParamKind::Date, true) => ("high", "max"),
                (_, false) => ("value", "min"),
                (_, true) => ("value", "max"),
            };
            order.push(format!(
                "(SELECT {aggregate}(i.{column}) FROM fhir_index i WHERE i.resource_type = r.resource_type \
                 AND i.id = r.id AND i.param = ${n}) {}",
                if key.descending { "DESC" } else { "ASC" }
            ));
        }
        order.push("r.last_updated_ms ASC".to_string());
        order.push("r.id ASC".to_string());
        // LIMIT and OFFSET are written as numbers, not bound: SQLite
        // plans a bound LIMIT with its value and so prepares the
        // statement again every time it is bound (a conditional create's
        // search spent two thirds of its time there).
        let offset = self.offset;
        (
            format!(
                "SELECT {columns} FROM fhir_resources r \
                 WHERE {conditions} ORDER BY {} LIMIT {count} OFFSET {offset}",
                order.join(", ")
            ),
            params,
        )
    }

    /// `SELECT count(*)` of every match.
    pub fn count_sql(&self) -> (String, Vec<SqlValue>) {
        let mut params = vec![SqlValue::from(self.resource_type.as_str())];
        let conditions = self.conditions(&mut params);
        (
            format!("SELECT count(*) FROM fhir_resources r WHERE {conditions}"),
            params,
        )
    }

    fn conditions(&self, params: &mut Vec<SqlValue>) -> String {
        let mut parts = vec![
            "r.resource_type = $1".to_string(),
            "r.deleted = 0".to_string(),
        ];
        if let Some(visible) = self.visibility.condition(&self.resource_type, params) {
            parts.push(visible);
        }
        for clause in &self.clauses {
            match clause {
                Clause::Ids(ids) => {
                    let list: Vec<String> = ids
                        .iter()
                        .map(|id| {
                            params.push(SqlValue::from(id.as_str()));
                            format!("${}", params.len())
                        })
                        .collect();
                    parts.push(format!("r.id IN ({})", list.join(", ")));
                }
                Clause::Index {
                    param,
                    negated,
                    alternatives,
                } => {
                    params.push(SqlValue::from(*param));
                    let param_n = params.len();
                    let ors: Vec<String> = alternatives
                        .iter()
                        .map(|alternative| alternative_sql(alternative, params))
                        .collect();
                    // Driven from the index (`fhir_index_value` leads with
                    // type and parameter), not by probing it once per
                    // resource of the type: with 100 000 Patients the
                    // probing form took ~100 ms per search.
                    parts.push(format!(
                        "r.id {}IN (SELECT i.id FROM fhir_index i WHERE i.resource_type = $1 \
                         AND i.param = ${param_n} AND ({}))",
                        if *negated { "NOT " } else { "" },
                        if ors.is_empty() {
                            "1 = 0".to_string()
                        } else {
                            ors.join(" OR ")
                        }
                    ));
                }
            }
        }
        parts.join(" AND ")
    }
}

fn values(value: &str) -> impl Iterator<Item = String> + '_ {
    // A comma escaped as `\,` belongs to the value.
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            ',' => out.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    out.push(current);
    out.into_iter()
}

const DATE_PREFIXES: &[&str] = &["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"];

fn date_clause(
    param: &'static str,
    value: &str,
    invalid: &dyn Fn(&str) -> SearchError,
) -> Result<Clause, SearchError> {
    let mut alternatives = Vec::new();
    let mut negated = false;
    for v in values(value) {
        let (prefix, text) = match DATE_PREFIXES.iter().find(|p| v.starts_with(**p)) {
            Some(prefix) => (*prefix, &v[2..]),
            None => ("eq", v.as_str()),
        };
        let range =
            dates::range(text).ok_or_else(|| invalid(&format!("'{text}' is not a date")))?;
        if prefix == "ne" {
            negated = true;
        }
        alternatives.push(Alternative::Date {
            prefix: if prefix == "ne" { "eq" } else { prefix },
            low: range.low,
            high: range.high,
        });
    }
    if negated && alternatives.len() > 1 {
        return Err(invalid("'ne' cannot be combined with other values"));
    }
    Ok(Clause::Index {
        param,
        negated,
        alternatives,
    })
}

fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn alternative_sql(alternative: &Alternative, params: &mut Vec<SqlValue>) -> String {
    let mut bind = |value: String| {
        params.push(SqlValue::Text(value));
        format!("${}", params.len())
    };
    match alternative {
        Alternative::Token { system, code } => {
            let mut parts = Vec::new();
            if let Some(system) = system {
                parts.push(format!("i.system = {}", bind(system.clone())));
            }
            if let Some(code) = code {
                parts.push(format!("i.value = {}", bind(code.clone())));
            }
            if parts.is_empty() {
                "1 = 1".to_string()
            } else {
                format!("({})", parts.join(" AND "))
            }
        }
        Alternative::Prefix(text) => {
            format!(
                "i.value LIKE {} ESCAPE '\\'",
                bind(format!("{}%", like_escape(text)))
            )
        }
        Alternative::Contains(text) => {
            format!(
                "i.value LIKE {} ESCAPE '\\'",
                bind(format!("%{}%", like_escape(text)))
            )
        }
        Alternative::Exact(text) => format!("i.system = {}", bind(text.clone())),
        Alternative::Reference(reference) => format!("i.value = {}", bind(reference.clone())),
        Alternative::AnyTypeId(id) => {
            format!(
                "i.value LIKE {} ESCAPE '\\'",
                bind(format!("%/{}", like_escape(id)))
            )
        }
        Alternative::Date { prefix, low, high } => match *prefix {
            // Only the bounds a comparison reads are bound: SQLite counts
            // parameters by the highest placeholder used.
            "gt" => format!("i.high > {}", bind(high.clone())),
            "lt" => format!("i.low < {}", bind(low.clone())),
            "ge" => format!("i.high >= {}", bind(low.clone())),
            "le" => format!("i.low <= {}", bind(high.clone())),
            "sa" => format!("i.low > {}", bind(high.clone())),
            "eb" => format!("i.high < {}", bind(low.clone())),
            "ap" => {
                let (low, high) = (bind(low.clone()), bind(high.clone()));
                format!("(i.low <= {high} AND i.high >= {low})")
            }
            _ => {
                let (low, high) = (bind(low.clone()), bind(high.clone()));
                format!("(i.low >= {low} AND i.high <= {high})")
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        passerelle_fhir::query::decode_pairs(query)
    }

    #[test]
    fn parameters_are_read_with_their_prefixes_and_modifiers() {
        let request = SearchRequest::parse(
            "Observation",
            &pairs("patient=p1&code=http%3A%2F%2Floinc.org%7C2345-7,718-7&date=ge2026-01&_count=5&_sort=-date&bogus=1"),
            false,
        )
        .unwrap();
        assert_eq!(request.count, 5);
        assert_eq!(request.clauses.len(), 3);
        assert_eq!(
            request
                .used
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>(),
            ["patient", "code", "date", "_sort"]
        );
        let (sql, params) = request.page_sql();
        assert!(sql.contains("i.high >= $"), "{sql}");
        assert!(params.contains(&SqlValue::from("Patient/p1")));
        assert!(params.contains(&SqlValue::from("http://loinc.org")));
        assert!(params.contains(&SqlValue::from("2026-01-01T00:00:00.000")));
    }

    #[test]
    fn summary_values_are_read_and_unknown_ones_refused() {
        let count = SearchRequest::parse("Patient", &pairs("_summary=count"), true).unwrap();
        assert!(count.count_only);
        for value in ["true", "text", "data", "false"] {
            let query = format!("_summary={value}");
            let request = SearchRequest::parse("Patient", &pairs(&query), true).unwrap();
            assert!(!request.count_only, "{query}");
            // Kept in the paging links, so that every page is cut alike.
            assert_eq!(request.used, [("_summary".to_string(), value.to_string())]);
        }
        // A value that cannot be read is refused however lenient the client.
        for strict in [true, false] {
            assert!(matches!(
                SearchRequest::parse("Patient", &pairs("_summary=bogus"), strict),
                Err(SearchError::InvalidValue { param, .. }) if param == "_summary"
            ));
        }
    }

    #[test]
    fn strict_handling_refuses_what_it_does_not_know() {
        assert_eq!(
            SearchRequest::parse("Patient", &pairs("shoe-size=42"), true),
            Err(SearchError::UnknownParameter("shoe-size".into()))
        );
        assert!(SearchRequest::parse("Patient", &pairs("family:phonetic=x"), true).is_err());
        assert!(SearchRequest::parse("Patient", &pairs("birthdate=yesterday"), false).is_err());
        assert!(SearchRequest::parse("Patient", &pairs("_count=many"), false).is_err());
        // Beyond the bound (and beyond i64, where it used to wrap).
        for offset in ["100001", "18446744073709551615", "-1"] {
            let query = format!("_offset={offset}");
            assert!(
                SearchRequest::parse("Patient", &pairs(&query), false).is_err(),
                "{query}"
            );
        }
        assert!(SearchRequest::parse("Patient", &pairs("_offset=100000"), false).is_ok());
    }

    /// Searches that would hold a read connection for tens of seconds (the
    /// access-security issue's 43 kB URLs and 5,000 `_include`s) are
    /// refused before any SQL, naming the limit.
    #[test]
    fn searches_over_the_bounds_are_refused() {
        let many = vec!["family=a"; MAX_PARAMETERS + 1].join("&");
        assert_eq!(
            SearchRequest::parse("Patient", &pairs(&many), true),
            Err(SearchError::TooMany {
                what: "search parameters",
                limit: MAX_PARAMETERS
            })
        );
        let or = format!("family={}", vec!["a"; MAX_VALUES + 1].join(","));
        assert!(matches!(
            SearchRequest::parse("Patient", &pairs(&or), true),
            Err(SearchError::TooMany {
                limit: MAX_VALUES,
                ..
            })
        ));
        let includes = vec!["_include=Encounter:patient"; MAX_INCLUDES + 1].join("&");
        assert!(matches!(
            SearchRequest::parse("Encounter", &pairs(&includes), true),
            Err(SearchError::TooMany {
                limit: MAX_INCLUDES,
                ..
            })
        ));
        let at_the_limit = vec!["_include=Encounter:patient"; MAX_INCLUDES].join("&");
        assert!(SearchRequest::parse("Encounter", &pairs(&at_the_limit), true).is_ok());
    }

    #[test]
    fn escaped_commas_stay_in_the_value() {
        assert_eq!(values("a\\,b,c").collect::<Vec<_>>(), ["a,b", "c"]);
    }

    use proptest::prelude::*;

    /// The highest `$N` of a statement.
    fn highest_placeholder(sql: &str) -> usize {
        sql.split('$')
            .skip(1)
            .filter_map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .max()
            .unwrap_or(0)
    }

    fn pair() -> impl Strategy<Value = (String, String)> {
        let key = prop_oneof![
            Just("identifier".to_string()),
            Just("family:exact".to_string()),
            Just("name:contains".to_string()),
            Just("birthdate".to_string()),
            Just("gender:not".to_string()),
            Just("_id".to_string()),
            Just("_lastUpdated".to_string()),
            Just("_sort".to_string()),
            Just("_count".to_string()),
            Just("link".to_string()),
            "[a-z_:.-]{1,12}",
        ];
        let value = prop_oneof![
            Just("ge1980".to_string()),
            Just("lt2026-01-01T10:00:00Z,eq1990".to_string()),
            Just("urn:oid:1.2|42,|7,x|".to_string()),
            Just("-birthdate,family".to_string()),
            Just("Patient/1,2".to_string()),
            any::<String>(),
        ];
        (key, value)
    }

    proptest! {
        // Every parameter bound is used and every placeholder bound: the
        // SQLite backend counts parameters by the highest placeholder.
        #[test]
        fn statements_bind_exactly_their_placeholders(
            pairs in proptest::collection::vec(pair(), 0..8),
            strict in any::<bool>(),
        ) {
            if let Ok(request) = SearchRequest::parse("Patient", &pairs, strict) {
                for (sql, params) in [request.page_sql(), request.count_sql()] {
                    prop_assert_eq!(highest_placeholder(&sql), params.len(), "{}", sql);
                }
            }
        }
    }
}
