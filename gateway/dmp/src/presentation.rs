//! The CNDA's rule on how a CDA shows itself: a document the DMP displays
//! (with its own stylesheet, "auto-présentable") must not run a script or
//! pull presentation from outside when it is shown.
//!
//! Our reading of the rule, said in docs/dmp.md: refused are script
//! elements (any namespace), `javascript:`/`vbscript:`/`data:text/html`
//! URLs in any attribute, event-handler attributes (`onload`, `onclick`...)
//! and an `xml-stylesheet` fetched from another host. Links a reader may
//! follow (`linkHtml href="https://..."`) and references to images held
//! elsewhere (WADO), which the ANS's own CI-SIS examples carry, are not
//! refused.

use quick_xml::events::Event;
use quick_xml::Reader;

/// What would run or be fetched when the CDA is shown, or `None`.
pub fn presentation_risk(bytes: &[u8]) -> Option<String> {
    let mut reader = Reader::from_reader(bytes);
    reader.config_mut().check_end_names = false;
    let mut buffer = Vec::new();
    loop {
        let event = match reader.read_event_into(&mut buffer) {
            Ok(event) => event,
            // Unreadable XML is the CDA reader's to report.
            Err(_) => return None,
        };
        match event {
            Event::Eof => return None,
            Event::PI(pi) => {
                let text = String::from_utf8_lossy(pi.as_ref()).into_owned();
                if let Some(rest) = text.trim_start().strip_prefix("xml-stylesheet") {
                    if let Some(href) = pseudo_attribute(rest, "href") {
                        if is_remote(&href) {
                            return Some(format!(
                                "an xml-stylesheet from another host ({})",
                                host_of(&href)
                            ));
                        }
                        if is_script_url(&href) {
                            return Some("an xml-stylesheet whose href is a script".into());
                        }
                    }
                }
            }
            Event::Start(element) | Event::Empty(element) => {
                let name = element.local_name();
                let name = String::from_utf8_lossy(name.as_ref()).into_owned();
                if name.eq_ignore_ascii_case("script") {
                    return Some("a <script> element".into());
                }
                for attribute in element.attributes().flatten() {
                    let key = String::from_utf8_lossy(attribute.key.local_name().as_ref())
                        .to_ascii_lowercase();
                    if key.len() > 2 && key.starts_with("on") && attribute.key.prefix().is_none() {
                        return Some(format!("an event handler ({key}) on <{name}>"));
                    }
                    let value = attribute
                        .unescape_value()
                        .map(|v| v.into_owned())
                        .unwrap_or_default();
                    if is_script_url(&value) {
                        return Some(format!("a script URL in <{name} {key}>"));
                    }
                }
            }
            _ => {}
        }
        buffer.clear();
    }
}

/// A pseudo-attribute of a processing instruction (`href="..."`).
fn pseudo_attribute(text: &str, name: &str) -> Option<String> {
    let at = text.find(&format!("{name}="))? + name.len() + 1;
    let rest = &text[at..];
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &rest[1..];
    let end = value.find(quote)?;
    Some(value[..end].to_string())
}

fn is_script_url(value: &str) -> bool {
    let value: String = value
        .trim()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    value.starts_with("javascript:")
        || value.starts_with("vbscript:")
        || value.starts_with("data:text/html")
}

fn is_remote(href: &str) -> bool {
    let href = href.trim().to_ascii_lowercase();
    href.starts_with("http:")
        || href.starts_with("https:")
        || href.starts_with("ftp:")
        || href.starts_with("//")
}

/// The host of a URL, for the message (never patient data: a stylesheet's
/// address).
fn host_of(href: &str) -> String {
    href.split("//")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .chars()
        .take(100)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cda(inside: &str) -> Vec<u8> {
        format!("<?xml version=\"1.0\"?><ClinicalDocument xmlns=\"urn:hl7-org:v3\">{inside}</ClinicalDocument>").into_bytes()
    }

    #[test]
    fn scripts_and_remote_stylesheets_are_found() {
        assert_eq!(presentation_risk(&cda("<title>Compte rendu</title>")), None);
        assert_eq!(
            presentation_risk(&cda("<text><script>alert(1)</script></text>")).as_deref(),
            Some("a <script> element")
        );
        assert_eq!(
            presentation_risk(&cda(
                "<text><h:script xmlns:h=\"http://www.w3.org/1999/xhtml\"/></text>"
            ))
            .as_deref(),
            Some("a <script> element")
        );
        let found = presentation_risk(&cda(
            "<text><linkHtml href=\" JavaScript:alert(1)\">x</linkHtml></text>",
        ))
        .unwrap();
        assert!(found.contains("script URL"), "{found}");
        let found = presentation_risk(&cda("<text><paragraph onclick=\"x()\"/></text>")).unwrap();
        assert!(found.contains("onclick"), "{found}");
        let remote = b"<?xml version=\"1.0\"?><?xml-stylesheet type=\"text/xsl\" href=\"https://cdn.example/cda.xsl\"?><ClinicalDocument/>";
        assert_eq!(
            presentation_risk(remote).as_deref(),
            Some("an xml-stylesheet from another host (cdn.example)")
        );
        let local = b"<?xml version=\"1.0\"?><?xml-stylesheet type='text/xsl' href='CDA.xsl'?><ClinicalDocument/>";
        assert_eq!(presentation_risk(local), None);
        // A link a reader may follow is not a risk (the ANS's examples
        // carry them).
        assert_eq!(
            presentation_risk(&cda(
                "<text><linkHtml href=\"https://www.e-cancer.fr\">INCa</linkHtml></text>"
            )),
            None
        );
    }

    /// None of the ANS's CI-SIS example documents is refused.
    #[test]
    fn the_ans_examples_pass() {
        let dir = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/corpus/ansforge-testcontenucda-3-0/ExemplesCDA"
        ));
        let Ok(entries) = std::fs::read_dir(dir) else {
            assert!(
                std::env::var_os("PASSERELLE_REQUIRE_PEERS").is_none(),
                "../shared/corpus is required here"
            );
            return;
        };
        let mut checked = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "xml") {
                let bytes = std::fs::read(&path).unwrap();
                assert_eq!(presentation_risk(&bytes), None, "{}", path.display());
                checked += 1;
            }
        }
        assert!(checked > 10, "{checked} examples");
    }
}
