//! The ANS business acknowledgement of the DMP, `ZAM^Z01^ZAM_Z01`
//! ("accusé de réception DMP", profile "transmission of CDA documents
//! over HL7 v2", CISIS_CDA_HL7_V2): MSH (HL7 v2.6, the original's sender
//! and receiver swapped), one OBX `ACK_RECEPTION_DMP` whose OBX-4 is the
//! original message's control id and OBX-5 `Y` or `N`, and an ERR with the
//! DMP's error code when it is `N`. Also [`asks_dmp_reception_ack`]: whether
//! a message of that profile asked for one (its `ACK_RECEPTION`
//! observation).

use crate::charset::Charset;
use crate::message::Message;
use crate::SegmentBuilder;

/// Whether `message` follows the ANS profile (MSH-21 `CISIS_CDA_HL7_*`)
/// and asks for a business acknowledgement of its DMP feed: OBX-3
/// `ACK_RECEPTION` with OBX-5 `Y`, and `DESTDMP` not `N`.
pub fn asks_dmp_reception_ack(message: &Message<'_>) -> bool {
    let cisis = message
        .decode(message.msh(21))
        .to_ascii_uppercase()
        .contains("CISIS_CDA_HL7");
    if !cisis {
        return false;
    }
    let flag = |name: &str| {
        message.segments_named("OBX").find_map(|obx| {
            let code = obx.field(3)?.repetition(1).component(1)?;
            if !message.decode(code).eq_ignore_ascii_case(name) {
                return None;
            }
            let value = obx.field(5)?.repetition(1).component(1)?;
            Some(message.decode(value).eq_ignore_ascii_case("Y"))
        })
    };
    flag("ACK_RECEPTION") == Some(true) && flag("DESTDMP") != Some(false)
}

/// The DMP's answer, for the acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DmpReception {
    /// The DMP took the document.
    Accepted,
    /// Refused: the DMP's error code (or Passerelle's, for a refusal
    /// before sending) and its text.
    Refused { code: String, text: String },
}

/// `ZAM^Z01^ZAM_Z01` answering `original`, with its own `control_id` and
/// `timestamp` (HL7 DTM).
pub fn build_zam_z01(
    original: &Message<'_>,
    reception: &DmpReception,
    control_id: &str,
    timestamp: &str,
) -> Vec<u8> {
    let delimiters = *original.delimiters();
    let charset = original.charset().unwrap_or(Charset::Utf8);
    let mut out = Vec::with_capacity(512);
    let mut msh = SegmentBuilder::new("MSH", &delimiters, charset);
    msh.field().raw(&delimiters.encoding_characters());
    for value in [
        original.msh(5),
        original.msh(6),
        original.msh(3),
        original.msh(4),
    ] {
        msh.field().raw(value);
    }
    msh.field().text(timestamp);
    msh.field();
    msh.field()
        .text("ZAM")
        .component()
        .text("Z01")
        .component()
        .text("ZAM_Z01");
    msh.field().text(control_id);
    let processing = original.msh(11);
    msh.field().raw(if processing.is_empty() {
        b"P"
    } else {
        processing
    });
    msh.field().text("2.6");
    for _ in 13..=16 {
        msh.field();
    }
    msh.field().text("FRA");
    let charset_field = original.msh(18);
    msh.field().raw(if charset_field.is_empty() {
        b"UNICODE UTF-8"
    } else {
        charset_field
    });
    msh.field();
    msh.field();
    msh.field().text("2.1").component().text("CISIS_CDA_HL7_V2");
    out.extend_from_slice(&msh.finish());

    let mut obx = SegmentBuilder::new("OBX", &delimiters, charset);
    obx.field().text("1");
    obx.field().text("CWE");
    obx.field()
        .text("ACK_RECEPTION_DMP")
        .component()
        .text("Accusé de réception DMP")
        .component()
        .text("AckMetierZAM");
    obx.field().raw(original.msh(10));
    let accepted = matches!(reception, DmpReception::Accepted);
    obx.field()
        .text(if accepted { "Y" } else { "N" })
        .component()
        .component()
        .text("expandedYes-NoIndicator");
    for _ in 6..=10 {
        obx.field();
    }
    obx.field().text("F");
    out.extend_from_slice(&obx.finish());

    if let DmpReception::Refused { code, text } = reception {
        let mut err = SegmentBuilder::new("ERR", &delimiters, charset);
        err.field();
        err.field();
        err.field()
            .text("207")
            .component()
            .text("Application error")
            .component()
            .text("messageErrorCondition");
        err.field().text("E");
        err.field()
            .text(code)
            .component()
            .text(text)
            .component()
            .text("DMP_ERROR_CODE");
        out.extend_from_slice(&err.finish());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORU: &[u8] = b"MSH|^~\\&|SIL-Y|labo|PFI-X|Organisation-X|202106060931||ORU^R01^ORU_R01|015|P|2.5|||||FRA|UNICODE UTF-8|||2.1^CISIS_CDA_HL7_V2\rPID|||1\rOBX|10|CE|ACK_RECEPTION^Accus\xc3\xa9 de r\xc3\xa9ception^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F|\rOBX|7|CE|DESTDMP^Destinataire DMP^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F|\r";

    #[test]
    fn the_acknowledgement_names_the_message_and_the_outcome() {
        let message = Message::parse(ORU).unwrap();
        assert!(asks_dmp_reception_ack(&message));
        let zam = build_zam_z01(&message, &DmpReception::Accepted, "Z1", "20261207031500");
        let text = String::from_utf8(zam).unwrap();
        let segments: Vec<&str> = text.split('\r').filter(|s| !s.is_empty()).collect();
        assert_eq!(
            segments[0],
            "MSH|^~\\&|PFI-X|Organisation-X|SIL-Y|labo|20261207031500||ZAM^Z01^ZAM_Z01|Z1|P|2.6|||||FRA|UNICODE UTF-8|||2.1^CISIS_CDA_HL7_V2"
        );
        assert_eq!(
            segments[1],
            "OBX|1|CWE|ACK_RECEPTION_DMP^Accusé de réception DMP^AckMetierZAM|015|Y^^expandedYes-NoIndicator||||||F"
        );
        assert_eq!(segments.len(), 2);
        let refused = DmpReception::Refused {
            code: "XDSDuplicateUniqueIdInRegistry".into(),
            text: "déjà déposé | 1.2.3".into(),
        };
        let zam =
            String::from_utf8(build_zam_z01(&message, &refused, "Z2", "20261207031500")).unwrap();
        assert!(zam.contains("|N^^expandedYes-NoIndicator|"), "{zam}");
        assert!(
            zam.contains("ERR|||207^Application error^messageErrorCondition|E|XDSDuplicateUniqueIdInRegistry^déjà déposé \\F\\ 1.2.3^DMP_ERROR_CODE"),
            "{zam}"
        );
        // The acknowledgement reads back as HL7 v2.
        assert!(Message::parse(zam.as_bytes()).is_ok());
    }

    #[test]
    fn only_messages_of_the_profile_that_ask_get_one() {
        let without = String::from_utf8_lossy(ORU).replace("ACK_RECEPTION^", "OTHER^");
        assert!(!asks_dmp_reception_ack(
            &Message::parse(without.as_bytes()).unwrap()
        ));
        let not_cisis = String::from_utf8_lossy(ORU).replace("2.1^CISIS_CDA_HL7_V2", "");
        assert!(!asks_dmp_reception_ack(
            &Message::parse(not_cisis.as_bytes()).unwrap()
        ));
        let not_dmp = String::from_utf8_lossy(ORU).replace(
            "DESTDMP^Destinataire DMP^MetaDMPMSS||Y",
            "DESTDMP^Destinataire DMP^MetaDMPMSS||N",
        );
        assert!(!asks_dmp_reception_ack(
            &Message::parse(not_dmp.as_bytes()).unwrap()
        ));
    }
}
