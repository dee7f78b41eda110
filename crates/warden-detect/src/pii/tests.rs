use super::*;

fn kinds(text: &str) -> Vec<(&'static str, &str)> {
    scan(text)
        .into_iter()
        .map(|d| (d.kind, &text[d.span]))
        .collect()
}

#[test]
fn finds_cards_only_with_luhn_and_issuer() {
    assert!(
        kinds("card 4111 1111 1111 1111 exp").contains(&("credit-card", "4111 1111 1111 1111"))
    );
    assert!(kinds("card 5500-0000-0000-0004").contains(&("credit-card", "5500-0000-0000-0004")));
    assert!(kinds("amex 378282246310005").contains(&("credit-card", "378282246310005")));
    assert!(
        kinds("card 4111 1111 1111 1112")
            .iter()
            .all(|(k, _)| *k != "credit-card")
    );
    // Luhn-valid but no issuer starts with 9.
    assert!(
        kinds("order 9111111111111111")
            .iter()
            .all(|(k, _)| *k != "credit-card")
    );
}

#[test]
fn finds_ibans_with_checksum() {
    assert!(
        kinds("IBAN: DE89 3704 0044 0532 0130 00.")
            .contains(&("iban", "DE89 3704 0044 0532 0130 00"))
    );
    assert!(kinds("GB82WEST12345698765432").contains(&("iban", "GB82WEST12345698765432")));
    assert!(
        kinds("DE89 3704 0044 0532 0130 01")
            .iter()
            .all(|(k, _)| *k != "iban")
    );
}

#[test]
fn applies_ssn_validity_rules() {
    assert!(kinds("SSN 123-45-6789").contains(&("us-ssn", "123-45-6789")));
    for invalid in [
        "000-12-3456",
        "666-12-3456",
        "912-12-3456",
        "123-00-4567",
        "123-45-0000",
        "078-05-1120",
    ] {
        assert!(
            kinds(invalid).iter().all(|(k, _)| *k != "us-ssn"),
            "{invalid}"
        );
    }
    assert!(kinds("social security number: 123456789").contains(&("us-ssn", "123456789")));
    assert!(kinds("order 123456789").iter().all(|(k, _)| *k != "us-ssn"));
}

#[test]
fn finds_national_ids_with_checksums() {
    assert!(kinds("DNI 12345678Z").contains(&("es-dni", "12345678Z")));
    assert!(kinds("NIE X1234567L").contains(&("es-dni", "X1234567L")));
    assert!(kinds("NIE X1234567A").is_empty());
    assert!(kinds("CPF 111.444.777-35").contains(&("br-cpf", "111.444.777-35")));
    assert!(kinds("CPF 111.111.111-11").is_empty());
    assert!(kinds("id 11010519491231002X").contains(&("cn-resident-id", "11010519491231002X")));
}

#[test]
fn finds_emails_and_phones_conservatively() {
    assert!(
        kinds("mail jane.doe+x@mail.example.co.uk now")
            .contains(&("email", "jane.doe+x@mail.example.co.uk"))
    );
    assert!(kinds("see logo@2x.png").is_empty());
    assert!(kinds("call +1 415 555 2671 today").contains(&("phone", "+1 415 555 2671")));
    assert!(kinds("call (415) 555-2671").contains(&("phone", "(415) 555-2671")));
    assert!(kinds("+44 20 7946 0958").contains(&("phone", "+44 20 7946 0958")));
    for negative in [
        "version 1.2.3",
        "2024-05-17 12:00:00",
        "port 8080",
        "1234567",
        "v10.20.30.40",
    ] {
        assert!(
            kinds(negative).is_empty(),
            "{negative}: {:?}",
            kinds(negative)
        );
    }
}
