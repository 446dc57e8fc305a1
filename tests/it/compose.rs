//! The files for users who run listd in containers.

use yaml_rust2::YamlLoader;

#[test]
fn the_compose_file_parses_and_names_postgres_listd_and_a_mail_catcher() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
        .unwrap();
    let docs = YamlLoader::load_from_str(&text).expect("docker-compose.yml is YAML");
    let services = &docs[0]["services"];
    assert!(!services.is_badvalue(), "has services");
    for name in ["postgres", "listd", "mailcatcher"] {
        assert!(!services[name].is_badvalue(), "service {name} is defined");
    }
    let env = &services["listd"]["environment"];
    assert!(
        !env["LISTD_DATABASE_URL"].is_badvalue(),
        "listd is pointed at the postgres service"
    );
    assert!(
        !env["LISTD_RELAY_URL"].is_badvalue(),
        "listd relays to the mail catcher"
    );
}

#[test]
fn the_dockerfile_is_multi_stage_and_runs_as_a_non_root_user() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    assert!(
        text.matches("\nFROM ").count() + usize::from(text.starts_with("FROM ")) >= 2,
        "multi-stage"
    );
    let user = text
        .lines()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert!(!user.contains("root") && !user.ends_with(" 0"), "{user}");
}
