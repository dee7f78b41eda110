fn main() {
    let t = std::env::args().nth(1).unwrap();
    for d in warden_detect::redact::scan(&t) {
        println!("{} {:?} {:?}", d.kind, d.span, &t[d.span.clone()]);
    }
    let r = warden_detect::redact::redact(&t);
    println!("{:?}", r.text);
    for d in warden_detect::redact::scan(&r.text) {
        println!("{} {:?} {:?}", d.kind, d.span, &r.text[d.span.clone()]);
    }
}
