//! HL7 v2 patient queries over MLLP, answered from the repository: QBP^Q22
//! (IHE PDQ) gets RSP^K22 with the candidates' PID segments, QBP^Q23
//! (IHE PIX) gets RSP^K23 with the identifiers in the asked domain; errors
//! are AE with an ERR naming the QPD field; queries are not journaled.

use crate::delivery;

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::{eventually, http_get_reply, Gateway};

/// Sends one framed message and returns the answer's segments.
fn exchange(addr: SocketAddr, message: &str) -> Vec<String> {
    crate::application_acks::exchange(addr, message)
        .split('\r')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn segment<'a>(segments: &'a [String], name: &str) -> &'a str {
    segments
        .iter()
        .find(|s| s.starts_with(name))
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no {name} in {segments:?}"))
}

fn field(segment: &str, n: usize) -> &str {
    segment.split('|').nth(n).unwrap_or("")
}

fn query(trigger: &str, control_id: &str, qpd: &str) -> String {
    let structure = "QBP_Q21";
    format!(
        "MSH|^~\\&|HIS|HOSP|PASSERELLE|GW|20261124090000||QBP^{trigger}^{structure}|{control_id}|P|2.5\r{qpd}\rRCP|I|10^RD\r"
    )
}

#[test]
fn pdq_and_pix_queries_are_answered_from_the_repository() {
    let gateway = Gateway::start();
    let acks = delivery::send_mllp(
        gateway.mllp_addr,
        &[delivery::mapping_case_input("adt-a01-pam-fr-ins")],
    );
    assert_eq!(acks, ["AA"]);
    let search = "/fhir/Patient?identifier=urn%3Aoid%3A1.2.250.1.213.1.4.10%7C279035121518989";
    assert!(eventually(Duration::from_secs(30), || {
        http_get_reply(gateway.http_addr, search).json()["total"] == 1
    }));

    // PDQ: by name and birth date.
    let answer = exchange(
        gateway.mllp_addr,
        &query(
            "Q22",
            "Q0001",
            "QPD|IHE PDQ Query|TAG1|@PID.5.1.1^pat-trois~@PID.7^19790328~@PID.8^F",
        ),
    );
    let msh = segment(&answer, "MSH");
    assert_eq!(field(msh, 8), "RSP^K22^RSP_K21");
    assert_eq!(field(segment(&answer, "MSA"), 1), "AA");
    assert_eq!(field(segment(&answer, "MSA"), 2), "Q0001");
    let qak = segment(&answer, "QAK");
    assert_eq!(field(qak, 1), "TAG1");
    assert_eq!(field(qak, 2), "OK");
    assert_eq!(field(qak, 4), "1");
    assert!(
        segment(&answer, "QPD").contains("@PID.7^19790328"),
        "QPD is echoed"
    );
    let pid = segment(&answer, "PID");
    assert!(
        field(pid, 3).contains("279035121518989^^^&1.2.250.1.213.1.4.10&ISO"),
        "{pid}"
    );
    assert!(field(pid, 3).contains("000003^^^CHU-X^PI"), "{pid}");
    assert!(field(pid, 5).starts_with("PAT-TROIS^DOMINIQUE"), "{pid}");
    assert_eq!(field(pid, 7), "19790328");
    assert_eq!(field(pid, 8), "F");

    // PDQ: by identifier, with the domain to return.
    let answer = exchange(
        gateway.mllp_addr,
        &query(
            "Q22",
            "Q0002",
            "QPD|IHE PDQ Query|TAG2|@PID.3.1^000003~@PID.3.4.1^CHU-X|||||^^^&1.2.250.1.213.1.4.10&ISO",
        ),
    );
    let pid = segment(&answer, "PID");
    assert_eq!(
        field(pid, 3),
        "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^INS-NIR",
        "{pid}"
    );

    // PDQ: nobody matches (NF), an unsupported parameter (AE with ERR).
    let answer = exchange(
        gateway.mllp_addr,
        &query("Q22", "Q0003", "QPD|IHE PDQ Query|TAG3|@PID.5.1.1^NOBODY"),
    );
    assert_eq!(field(segment(&answer, "MSA"), 1), "AA");
    assert_eq!(field(segment(&answer, "QAK"), 2), "NF");
    assert!(!answer.iter().any(|s| s.starts_with("PID")));
    let answer = exchange(
        gateway.mllp_addr,
        &query("Q22", "Q0004", "QPD|IHE PDQ Query|TAG4|@PID.99^x"),
    );
    assert_eq!(field(segment(&answer, "MSA"), 1), "AE");
    assert_eq!(field(segment(&answer, "QAK"), 2), "AE");
    assert!(segment(&answer, "ERR").contains("QPD^1^3"), "{answer:?}");

    // PIX: the local id gives the INS.
    let answer = exchange(
        gateway.mllp_addr,
        &query(
            "Q23",
            "Q0005",
            "QPD|IHE PIX Query|TAG5|000003^^^CHU-X^PI|^^^&1.2.250.1.213.1.4.10&ISO",
        ),
    );
    assert_eq!(field(segment(&answer, "MSH"), 8), "RSP^K23^RSP_K23");
    assert_eq!(field(segment(&answer, "QAK"), 2), "OK");
    assert_eq!(
        field(segment(&answer, "PID"), 3),
        "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^INS-NIR"
    );
    // PIX errors: an unknown source domain (QPD-3), an unknown target
    // domain (QPD-4), an unknown patient (NF).
    let answer = exchange(
        gateway.mllp_addr,
        &query("Q23", "Q0006", "QPD|IHE PIX Query|TAG6|1^^^NOWHERE^PI"),
    );
    assert_eq!(field(segment(&answer, "MSA"), 1), "AE");
    assert!(segment(&answer, "ERR").contains("QPD^1^3"), "{answer:?}");
    let answer = exchange(
        gateway.mllp_addr,
        &query(
            "Q23",
            "Q0007",
            "QPD|IHE PIX Query|TAG7|000003^^^CHU-X^PI|^^^ELSEWHERE",
        ),
    );
    assert_eq!(field(segment(&answer, "MSA"), 1), "AE");
    assert!(segment(&answer, "ERR").contains("QPD^1^4"), "{answer:?}");
    let answer = exchange(
        gateway.mllp_addr,
        &query("Q23", "Q0008", "QPD|IHE PIX Query|TAG8|999^^^CHU-X^PI"),
    );
    assert_eq!(field(segment(&answer, "QAK"), 2), "NF");

    // Queries are answered, not stored.
    let messages = delivery::all_messages(&gateway);
    assert_eq!(messages.len(), 1, "only the ADT is journaled");
}
