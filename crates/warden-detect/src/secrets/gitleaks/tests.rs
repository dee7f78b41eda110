use super::*;

#[test]
fn translates_go_only_constructs() {
    assert_eq!(translate(r"\w+"), "[[:word:]]+");
    assert_eq!(translate(r"[\w.-]"), "[[[:word:]].-]");
    assert_eq!(translate(r"\bx\b"), r"(?-u:\b)x(?-u:\b)");
    assert_eq!(
        translate(r"^\$(?:\d+|{\d+})$"),
        r"^\$(?:[0-9]+|\{[0-9]+\})$"
    );
    assert_eq!(translate(r"a{2,3}"), "a{2,3}");
    assert_eq!(translate(r"[^]]+"), r"[^\]]+");
    assert_eq!(translate(r"[[:alpha:]&~]"), r"[[:alpha:]\&\~]");
    assert_eq!(translate(r"[a[b]"), r"[a\[b]");
}

#[test]
fn translated_classes_are_ascii_like_go() {
    let (re, _) = compile(r"^\w+$").expect("compiles");
    assert!(re.is_match("abc_09"));
    assert!(!re.is_match("é"));
    let (re, _) = compile(r"^\s$").expect("compiles");
    assert!(!re.is_match("\u{a0}"));
}

#[test]
fn every_content_rule_compiles_and_only_path_rules_and_replaced_rules_are_skipped() {
    let g = Gitleaks::new();
    let mut skipped: Vec<&str> = g.skipped().iter().map(|s| s.id).collect();
    skipped.sort_unstable();
    assert_eq!(
        skipped,
        [
            "freemius-secret-key",
            "hashicorp-tf-password",
            "kubernetes-secret-yaml",
            "nuget-config-password",
            "pkcs12-file",
            "private-key"
        ]
    );
    assert_eq!(g.active() + g.skipped().len(), RULES.len());
    // The global allowlist compiles completely, one pattern per upstream regex.
    assert_eq!(
        g.global_allow.as_ref().map(|r| r.pattern_len()),
        Some(GLOBAL_ALLOW_REGEXES.len())
    );
}

#[test]
fn every_lazily_built_regex_builds() {
    let g = Gitleaks::new();
    let mut count = 0;
    for (id, lazy) in g.all_lazy() {
        assert!(!lazy.is_built(), "{id}: built before use");
        if let Err(e) = lazy.build() {
            panic!("{id}: {e}");
        }
        assert!(lazy.get().is_some(), "{id}");
        count += 1;
    }
    // Each active rule has its own regex, plus allowlists and operator gates.
    assert!(
        count > g.active(),
        "{count} regexes for {} rules",
        g.active()
    );
}

#[test]
fn a_scan_builds_only_the_rules_its_keywords_gate() {
    let g = Gitleaks::new();
    let built = |g: &Gitleaks| -> Vec<&'static str> {
        g.rules
            .iter()
            .filter(|r| r.regex.is_built())
            .map(|r| r.def.id)
            .collect()
    };
    // No keyword: nothing is built.
    let (found, _) = g.scan("plain words, nothing to see here");
    assert!(found.is_empty());
    assert!(built(&g).is_empty(), "{:?}", built(&g));
    // A GitHub token: the rules gated by `ghp_` run (and find it); the others stay unbuilt.
    let token = "ghp_0123456789abcdefABCDEF0123456789abcd";
    let (found, _) = g.scan(&format!("token is {token} ok"));
    assert!(found.iter().any(|m| m.id == "github-pat"), "{found:?}");
    let now = built(&g);
    assert!(now.contains(&"github-pat"), "{now:?}");
    assert!(
        now.len() < g.active() / 4,
        "{} of {} rules built: {now:?}",
        now.len(),
        g.active()
    );
    // The generic rules are built ahead of time on request.
    g.build_common();
    assert!(built(&g).iter().any(|id| id.starts_with("generic")));
}

#[test]
fn finds_the_secret_group_not_the_context() {
    let g = Gitleaks::new();
    let text = "config:\n  DB_PASSWORD=8ae31cacf141669ddfb5da\n";
    let found = g.scan(text).0;
    let m = found
        .iter()
        .find(|m| m.id == "generic-api-key")
        .expect("generic rule fires");
    assert_eq!(&text[m.span.clone()], "8ae31cacf141669ddfb5da");
}

#[test]
fn applies_rule_allowlists_and_entropy() {
    let g = Gitleaks::new();
    // Allowlisted documentation key.
    assert!(
        g.scan("aws_access_key_id = AKIAIOSFODNN7EXAMPLE")
            .0
            .iter()
            .all(|m| m.id != "aws-access-token")
    );
    // A real-looking one is found, with an exact span.
    let text = "aws_access_key_id = AKIAZ3MSJV7WQ4TLBN2K";
    let m = g
        .scan(text)
        .0
        .into_iter()
        .find(|m| m.id == "aws-access-token")
        .expect("found");
    assert_eq!(&text[m.span], "AKIAZ3MSJV7WQ4TLBN2K");
    // Below the rule's entropy threshold.
    assert!(
        g.scan("AKIAAAAAAAAAAAAAAAAA")
            .0
            .iter()
            .all(|m| m.id != "aws-access-token")
    );
}

#[test]
fn a_rule_without_its_keyword_nearby_never_runs() {
    let g = Gitleaks::new();
    // The GitHub PAT pattern needs `ghp_`; the same body without it is not a finding.
    assert!(
        g.scan("0123456789abcdefghijklmnopqrstuvwxyZAB")
            .0
            .is_empty()
    );
}

#[test]
fn global_stopwords_allowlist_sequential_alphabets() {
    let g = Gitleaks::new();
    assert!(
        g.scan("ghp_0123456789abcdefghijklmnopqrstuvwxyZ")
            .0
            .is_empty()
    );
    assert!(
        !g.scan("ghp_R8xT2mQv9LpZ4nW7yK1sB6cJ0dF3hG5aE2uV")
            .0
            .is_empty()
    );
}

#[test]
fn every_patch_applies_to_its_rule() {
    for (id, from, _, _) in PATCHES {
        let def = RULES
            .iter()
            .find(|r| r.id == *id)
            .expect("patched rule exists");
        assert!(
            def.regex.is_some_and(|r| r.contains(from)),
            "patch for {id} no longer applies"
        );
    }
    let terminated = RULES
        .iter()
        .filter(|r| r.regex.is_some_and(|p| p.contains(UPSTREAM_TERMINATOR)))
        .count();
    assert!(
        terminated > 100,
        "the upstream terminator idiom changed: {terminated} rules use it"
    );
}

#[test]
fn openai_keys_ending_in_punctuation_characters_are_found() {
    let g = Gitleaks::new();
    let key = format!(
        "sk-proj-{}T3BlbkFJ{}-",
        "a1B2c3D4e5".repeat(7) + "abcd",
        "Z9y8X7w6V5".repeat(7) + "abc"
    );
    let text = format!("The key is {key}.");
    let m = g
        .scan(&text)
        .0
        .into_iter()
        .find(|m| m.id == "openai-api-key")
        .expect("found");
    assert_eq!(&text[m.span], key);
}

#[test]
fn the_assignment_gate_recognises_the_upstream_template() {
    let g = Gitleaks::new();
    let templated = g.rules.iter().filter(|r| r.assignment).count();
    assert!(
        templated > 50,
        "only {templated} rules use the assignment template"
    );
    assert!(
        g.rules
            .iter()
            .any(|r| r.def.id == "generic-api-key" && r.assignment)
    );
    assert_eq!(operator_after(b"api_key = x", 3), Some(8));
    assert_eq!(operator_after(b"sonar_login\"  : x", 5), Some(14));
    assert_eq!(operator_after(b"key every 90 days.", 3), None);
    assert_eq!(operator_after(b"key (x) = 1", 3), None);
}

#[test]
fn assignment_rules_are_searched_around_their_operator() {
    let g = Gitleaks::new();
    let with_reach = g
        .rules
        .iter()
        .filter(|r| r.assignment_reach.is_some())
        .count();
    let templated = g.rules.iter().filter(|r| r.assignment).count();
    assert_eq!(with_reach, templated, "every assignment rule gets a reach");
    let generic = g
        .rules
        .iter()
        .find(|r| r.def.id == "generic-api-key")
        .and_then(|r| r.assignment_reach.as_ref())
        .expect("generic-api-key is an assignment rule");
    // Its value is unbounded (`[a-z0-9][a-z0-9+/]{11,}`): the window follows the run, in
    // either case, however long it is.
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let value: String = (0..3000usize)
        .map(|i| char::from(alphabet[(i * 7919 + i * i / 3) % alphabet.len()]))
        .collect();
    let text = format!("intro text. api_key = {value} and more text after the value");
    let op = text.find('=').expect("has an operator");
    let w = generic.window(&text, op);
    assert!(w.start <= text.find("api_key").expect("has a name"));
    assert!(w.end > op + 2 + value.len(), "{w:?}");
    // ... and stops a few bytes after it, not a fixed 16 KiB further.
    assert!(w.end < text.len(), "{w:?}");
    let found = g.scan(&text).0;
    assert!(
        found
            .iter()
            .any(|m| m.id == "generic-api-key" && m.span == (op + 2..op + 2 + value.len())),
        "{found:?}"
    );
}

#[test]
fn only_rules_whose_keywords_can_be_outside_the_match_reach_further() {
    let g = Gitleaks::new();
    let distant: Vec<&str> = g
        .rules
        .iter()
        .filter(|r| r.distant_keywords)
        .map(|r| r.def.id)
        .collect();
    assert!(distant.contains(&"facebook-access-token"));
    assert!(distant.contains(&"airtable-personnal-access-token"));
    assert!(!distant.contains(&"generic-api-key"));
    assert!(!distant.contains(&"github-pat"));
    // A keyword on the line before the secret still opens the rule.
    let text = "facebook settings\n123456789012345|q8Zr2LmX0pV7tN4cW9yB3kH6sJ1dF5gA\n";
    assert!(
        g.scan(text)
            .0
            .iter()
            .any(|m| m.id == "facebook-access-token")
    );
}

#[test]
fn a_vault_token_that_starts_with_24_letters_is_not_allowlisted() {
    // The first 24 characters after `hvs.` are letters: the upstream allowlist, unanchored,
    // used to match inside it (found by the planted-secret property test, CSV context).
    let token = "hvs.nvQpKYXOgDqDyXutuCNGIwKsiD44dHA2saZiRESFw6yybaQVyHZbrT9cafXM_ucuxApthkCxSX9US_2XgJR0LylNJeJvnuW";
    let text = format!("id,name,value\n17,prod,{token},2024-05-01\n");
    let found = crate::secrets::scan(&text);
    let start = text.find(token).unwrap();
    assert!(
        found
            .iter()
            .any(|d| d.span.start <= start && d.span.end >= start + token.len()),
        "{found:?}"
    );
    // What the allowlist is for still holds: a legacy `s.` value of letters only.
    let legacy = "token = \"s.abcdefghijklmnopqrstuvwx\"\n";
    assert!(
        !crate::secrets::scan(legacy)
            .iter()
            .any(|d| d.kind == "vault-service-token"),
        "{:?}",
        crate::secrets::scan(legacy)
    );
}

#[test]
fn unbounded_rules_get_narrow_windows_that_still_find_their_matches() {
    let g = Gitleaks::new();
    let rule = |id: &str| {
        g.rules
            .iter()
            .find(|r| r.def.id == id)
            .unwrap_or_else(|| panic!("rule {id} in use"))
    };
    // `jwt` (`ey` occurs on most lines) is searched in the run of token bytes around `ey`;
    // `curl-auth-user` only forward from `curl`, which starts every match.
    assert!(rule("jwt").around.is_some());
    assert!(!rule("jwt").starts_with_keyword);
    assert!(rule("curl-auth-user").around.is_none());
    assert!(rule("curl-auth-user").starts_with_keyword);
    // Rules whose keyword may be outside the match, or that are searched around their
    // operator, keep their windows.
    assert!(rule("facebook-access-token").around.is_none());
    assert!(!rule("facebook-access-token").starts_with_keyword);
    assert!(rule("generic-api-key").around.is_none());
    assert!(!rule("generic-api-key").starts_with_keyword);

    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    // Keys, money and they on the lines around: `ey` everywhere, the token still found whole.
    let text = format!("the key they paid money for\ntoken {jwt}\nhey, they said\n");
    let found = g.scan(&text).0;
    let start = text.find(jwt).expect("planted");
    assert!(
        found
            .iter()
            .any(|m| m.id == "jwt" && m.span == (start..start + jwt.len())),
        "{found:?}"
    );
    let curl = "curl -s https://api.example.com/v1/items \\\n  -u admin:Q7vLm2Xp9RtZ";
    let text = format!("run this:\n{curl}\nthen curl again\n");
    let found = g.scan(&text).0;
    assert!(found.iter().any(|m| m.id == "curl-auth-user"), "{found:?}");
}
