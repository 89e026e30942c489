//! Configuration: the shipped examples, `keygate check`, and every error at once.

use crate::common::{keygate, succeeded, write};
use keygate::config::Config;
use std::path::Path;

#[test]
fn shipped_examples_pass_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Config::load_with_env(&root.join("config/keygate.yaml"), |_| None)
        .expect("config/keygate.yaml is valid");
    assert!(config.apis.len() >= 2);
    assert_eq!(
        config.key_managers[0].issuer,
        "https://api.asgardeo.io/t/acme/oauth2/token"
    );
    // Run from elsewhere: relative paths resolve against the config file's folder.
    let stdout = succeeded(
        &keygate()
            .args(["check", "--config"])
            .arg(root.join("config/keygate.yaml"))
            .current_dir("/")
            .output()
            .unwrap(),
    );
    assert!(stdout.contains("key managers: 1"), "{stdout}");
    assert!(stdout.contains("Orders v1"), "{stdout}");
}

#[test]
fn check_reports_every_error_with_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "keygate.yaml", "listen: nowhere\nkey_managers:\n  - name: A\n    issuer: https://a\n    certificates: {type: PEM, value: keys/missing.pem}\n    client_secret: ${KEYGATE_TEST_UNSET_SECRET}\n    clock_skew: 30 parsecs\n  - name: B\n    type: asgardeo\napis: [apis]\n");
    write(d, "apis/a.yaml", "name: A\ncontext: /a\nversion: v1\nupstream: ftp://x\nkey_managers: [Nope]\nresources:\n  - {verb: FETCH, target: nope}\n");
    write(d, "apis/b.yaml", "name: B\ncontext: /b\nversion: v1\nupstream: http://127.0.0.1:1\nresources: [{verb: GET, target: /}]\nsurprise: 1\n");
    let out = keygate()
        .args(["check", "--config"])
        .arg(d.join("keygate.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "keygate.yaml: line 6: client_secret: environment variable KEYGATE_TEST_UNSET_SECRET is not set",
        "keygate.yaml: (yaml)",
        "30 parsecs",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    // The duration error stops the main file's parse; fix it and the rest appears, all at once.
    write(d, "keygate.yaml", "listen: nowhere\nkey_managers:\n  - name: A\n    issuer: https://a\n    certificates: {type: PEM, value: keys/missing.pem}\n    client_secret: ${KEYGATE_TEST_UNSET_SECRET}\n  - name: B\n    type: asgardeo\napis: [apis]\n");
    let out = keygate()
        .args(["check", "--config"])
        .arg(d.join("keygate.yaml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "environment variable KEYGATE_TEST_UNSET_SECRET is not set",
        "keygate.yaml: listen: \"nowhere\" is not a host:port address",
        "keygate.yaml: key_managers[0].certificates.value: cannot read PEM file",
        "keygate.yaml: key_managers[1].organization: is required for type asgardeo",
        "a.yaml: upstream: scheme \"ftp\" is not http or https",
        "a.yaml: resources[0].verb: \"FETCH\" is not one of",
        "a.yaml: resources[0].target: \"nope\" must start with /",
        "b.yaml: (yaml): line 6 column 1: unknown field `surprise`",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(err.starts_with("8 configuration error(s)"), "{err}");
}

#[test]
fn env_substitution_and_cross_references() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "k.yaml", "key_managers:\n  - name: ${KM_NAME}\n    type: asgardeo\n    organization: ${ORG:-fallback}\napis: [apis]\n");
    write(d, "apis/a.yaml", "name: A\ncontext: /a\nversion: v1\nupstream: http://127.0.0.1:1\nkey_managers: [Other]\nresources: [{verb: GET, target: /}]\n");
    write(d, "apis/b.yaml", "name: B\ncontext: a\nversion: v1\nupstream: http://127.0.0.1:1\nresources: [{verb: GET, target: /}]\n");
    let env = |n: &str| (n == "KM_NAME").then(|| "Main".to_string());
    let err = Config::load_with_env(&d.join("k.yaml"), env).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("a.yaml: key_managers[0]: \"Other\" is not a configured key manager"),
        "{text}"
    );
    assert!(
        text.contains("b.yaml: context: /a/v1 is already served by API \"A\""),
        "{text}"
    );
    write(d, "apis/a.yaml", "name: A\ncontext: /a\nversion: v1\nupstream: http://127.0.0.1:1\nkey_managers: [Main]\nresources: [{verb: GET, target: /}]\n");
    std::fs::remove_file(d.join("apis/b.yaml")).unwrap();
    let c = Config::load_with_env(&d.join("k.yaml"), env).unwrap();
    assert_eq!(c.key_managers[0].name, "Main");
    assert_eq!(
        c.key_managers[0].issuer,
        "https://api.asgardeo.io/t/fallback/oauth2/token"
    );
}

#[test]
fn pem_certificates_from_a_relative_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let vectors: serde_json::Value = serde_json::from_slice(
        &std::fs::read(crate::common::shared("envoy-jwt-authn/vectors.json")).unwrap(),
    )
    .unwrap();
    write(
        d,
        "keys/envoy.pem",
        vectors["pem"]["envoy_PublicKey_keys0"].as_str().unwrap(),
    );
    write(d, "k.yaml", "key_managers:\n  - name: Envoy\n    issuer: https://example.com\n    certificates: {type: PEM, value: keys/envoy.pem}\napis: []\n");
    let c = Config::load_with_env(&d.join("k.yaml"), |_| None).unwrap();
    assert!(matches!(
        c.key_managers[0].certificates,
        Some(keygate::config::Certificates::Pem(_))
    ));
    write(
        d,
        "keys/envoy.pem",
        "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n",
    );
    let e = Config::load_with_env(&d.join("k.yaml"), |_| None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("key_managers[0].certificates.value"), "{e}");
}

#[test]
fn asgardeo_endpoints_default_from_the_organization() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "k.yaml", "key_managers:\n  - name: A\n    type: asgardeo\n    organization: acme\n    connector: {create_roles: true}\n  - name: B\n    type: asgardeo\n    organization: beta\n    base_url: https://eu.asgardeo.example/\n    issuer: https://custom/issuer\napis: []\n");
    let c = Config::load_with_env(&d.join("k.yaml"), |_| None).unwrap();
    let a = &c.key_managers[0];
    let t = "https://api.asgardeo.io/t/acme";
    assert_eq!(a.issuer, format!("{t}/oauth2/token"));
    assert!(
        matches!(&a.certificates, Some(keygate::config::Certificates::Jwks(u)) if u.as_str() == format!("{t}/oauth2/jwks"))
    );
    assert_eq!(
        a.introspection_endpoint.as_ref().unwrap().as_str(),
        format!("{t}/oauth2/introspect")
    );
    assert_eq!(
        a.token_endpoint.as_ref().unwrap().as_str(),
        format!("{t}/oauth2/token")
    );
    assert_eq!(
        (a.consumer_key_claim.as_deref(), a.scopes_claim.as_str()),
        (Some("azp"), "scope")
    );
    let conn = a.connector.as_ref().unwrap();
    assert_eq!(
        conn.api_resource_management_endpoint.as_deref(),
        Some(format!("{t}/api/server/v1/api-resources").as_str())
    );
    assert_eq!(
        conn.roles_endpoint.as_deref(),
        Some(format!("{t}/scim2/v2/Roles").as_str())
    );
    assert_eq!(
        conn.global_scopes_resource.as_deref(),
        Some("APIM_GLOBAL_SCOPES")
    );
    let b = &c.key_managers[1];
    assert_eq!(
        b.issuer, "https://custom/issuer",
        "explicit fields override"
    );
    assert_eq!(
        b.token_endpoint.as_ref().unwrap().as_str(),
        "https://eu.asgardeo.example/t/beta/oauth2/token"
    );
}

#[test]
fn a_native_file_named_api_yaml_is_not_an_apictl_project() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "k.yaml", "apis: [apis]\n");
    write(d, "apis/api.yaml", "name: Api\ncontext: /api\nversion: v1\nupstream: http://127.0.0.1:9\nresources: [{verb: GET, target: /}]\n");
    let c = Config::load_with_env(&d.join("k.yaml"), |_| None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.apis[0].name, "Api");
}
