//! Arriving from WSO2: apictl projects, OpenAPI with x-wso2 extensions, key manager exports,
//! discovery and import-km, the Asgardeo type, token types per resource.

use crate::common::{keygate, shared, succeeded, write, Env};
use keygate::config::Config;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A main config file whose key manager is the embedded provider (self-validation).
fn main_config(idp: &keygate::devidp::DevIdp, apis: &str) -> String {
    format!(
        "key_managers:\n  - name: Asgardeo\n    type: asgardeo\n    organization: {}\n    base_url: {}\n    client_id: demo-client\n    client_secret: demo-secret\napis: [{apis}]\n",
        idp.org(),
        idp.base_url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_apictl_petstore_export_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("apis/SwaggerPetstore-1.0.5");
    copy_dir(&shared("apictl/SwaggerPetstore-1.0.5"), &project);
    let idp = keygate::devidp::DevIdp::start().await.unwrap();
    let echo = keygate::echo::EchoServer::start().await.unwrap();
    // The export's endpoints are scheme-less petstore.swagger.io: point production at our echo.
    let api_yaml = std::fs::read_to_string(project.join("api.yaml")).unwrap();
    let fixed = api_yaml.replacen(
        "production_endpoints:\n      url: petstore.swagger.io",
        &format!("production_endpoints:\n      url: {}/v2", echo.url()),
        1,
    );
    assert_ne!(fixed, api_yaml, "the export's layout changed");
    std::fs::write(project.join("api.yaml"), fixed).unwrap();
    write(dir.path(), "keygate.yaml", &main_config(&idp, "apis"));
    // `keygate check` reports what the import produced.
    let stdout = succeeded(
        &keygate()
            .args(["check", "--config"])
            .arg(dir.path().join("keygate.yaml"))
            .output()
            .unwrap(),
    );
    assert!(
        stdout.contains("SwaggerPetstore 1.0.5  /v2/1.0.5"),
        "{stdout}"
    );
    assert!(stdout.contains("[20 resources, 2 scopes]"), "{stdout}");

    let env = Env::from_file(idp, &dir.path().join("keygate.yaml")).await;
    let read = env.token(&["read:pets"]);
    let r = env
        .get("/v2/1.0.5/pet/findByStatus?status=available", Some(&read))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/v2/pet/findByStatus");
    // Any one of write:pets, read:pets suffices; none of them does not.
    let r = env
        .send(
            env.http
                .post(env.url("/v2/1.0.5/pet"))
                .bearer_auth(env.token(&["profile"])),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "900910".to_string()));
    // GET /pet/{petId} has no scopes: any valid token.
    assert_eq!(
        env.get("/v2/1.0.5/pet/7", Some(&env.token(&[])))
            .await
            .status,
        200
    );
    assert_eq!(env.get("/v2/1.0.5/pet/7", None).await.code(), "900902");
    // Not the default version, and no such resource.
    assert_eq!(env.get("/v2/pet/7", Some(&read)).await.status, 404);
    assert_eq!(
        env.send(
            env.http
                .patch(env.url("/v2/1.0.5/pet/7"))
                .bearer_auth(&read)
        )
        .await
        .code(),
        "900906"
    );
}

const SWAGGER: &str = r#"swagger: "2.0"
info: {title: Orders, version: v2}
basePath: /orders
securityDefinitions:
  default:
    type: oauth2
    flow: implicit
    authorizationUrl: https://test.com
    scopes: {"orders:read": Read orders, "orders:write": Write orders}
    x-scopes-bindings: {"orders:read": "clerk, Internal/subscriber", "orders:write": manager}
paths:
  /items/{id}:
    get:
      security: [{default: ["orders:read"]}]
      x-auth-type: Application & Application User
    delete:
      security: [{default: ["orders:write"]}]
      x-auth-type: Application User
  /health:
    get:
      security: [{default: []}]
      x-auth-type: None
  /jobs:
    post:
      security: [{default: []}]
      x-auth-type: Application
x-wso2-basePath: /{version}/orders
x-wso2-production-endpoints: {urls: ["UPSTREAM"], type: http}
x-wso2-auth-header: X-Api-Token
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apictl_project_with_only_a_swagger_and_a_context_template() {
    let dir = tempfile::tempdir().unwrap();
    let idp = keygate::devidp::DevIdp::start().await.unwrap();
    let echo = keygate::echo::EchoServer::start().await.unwrap();
    // api.yaml without operations: the OAS2 swagger supplies them.
    write(dir.path(), "apis/Orders-v2/api.yaml", &format!(
        "type: api\nversion: v4.6.0\ndata:\n  name: Orders\n  context: /{{version}}/orders\n  version: v2\n  isDefaultVersion: true\n  authorizationHeader: X-Api-Token\n  keyManagers: [Asgardeo]\n  endpointConfig:\n    endpoint_type: http\n    production_endpoints: {{url: \"{}/be\"}}\n    sandbox_endpoints: {{url: sandbox.internal}}\n",
        echo.url()
    ));
    write(
        dir.path(),
        "apis/Orders-v2/Definitions/swagger.yaml",
        &SWAGGER.replace("UPSTREAM", "http://unused"),
    );
    write(dir.path(), "keygate.yaml", &main_config(&idp, "apis"));
    let config = Config::load(&dir.path().join("keygate.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let api = &config.apis[0];
    assert_eq!(
        (api.context.as_str(), api.version.as_str()),
        ("/{version}/orders", "v2")
    );
    assert_eq!(
        api.base_paths(),
        vec!["/v2/orders".to_string(), "/orders".to_string()]
    );
    let read = api.scopes.iter().find(|s| s.name == "orders:read").unwrap();
    assert_eq!(
        read.roles,
        vec!["clerk".to_string(), "Internal/subscriber".to_string()]
    );

    let env = Env::from_file(idp, &dir.path().join("keygate.yaml")).await;
    let with = |t: &str| {
        env.http
            .get(env.url("/v2/orders/items/5"))
            .header("X-Api-Token", format!("Bearer {t}"))
    };
    let r = env.send(with(&env.token(&["orders:read"]))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/be/items/5");
    assert!(
        r.json()["headers"].get("x-api-token").is_none(),
        "the token header is not forwarded"
    );
    // Default version without the version segment; the Authorization header is not this API's.
    let r = env
        .send(env.http.get(env.url("/orders/items/5")).header(
            "X-Api-Token",
            format!("Bearer {}", env.token(&["orders:read"])),
        ))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        env.get("/v2/orders/items/5", Some(&env.token(&["orders:read"])))
            .await
            .code(),
        "900902"
    );
    // x-auth-type None.
    assert_eq!(env.get("/v2/orders/health", None).await.status, 200);
    // Token types: DELETE is Application User only; POST /jobs Application only.
    let app = env.token(&["orders:write"]);
    let r = env
        .send(
            env.http
                .delete(env.url("/v2/orders/items/5"))
                .header("X-Api-Token", format!("Bearer {app}")),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (401, "900905".to_string()),
        "{}",
        r.text()
    );
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains(r#"error="invalid_token""#));
    let mut user_claims =
        env.idp
            .claims("demo-client", &["orders:write"], Duration::from_secs(600));
    user_claims["aut"] = json!("APPLICATION_USER");
    user_claims["sub"] = json!("alice@acme");
    let user = env.idp.mint_claims(&user_claims);
    let r = env
        .send(
            env.http
                .delete(env.url("/v2/orders/items/5"))
                .header("X-Api-Token", format!("Bearer {user}")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let post = |t: &str| {
        env.http
            .post(env.url("/v2/orders/jobs"))
            .header("X-Api-Token", format!("Bearer {t}"))
    };
    assert_eq!(env.send(post(&app)).await.status, 200);
    assert_eq!(env.send(post(&user)).await.code(), "900905");
    // An opaque token (introspection without `aut`) is an application token, as Asgardeo's are.
    let opaque = env
        .idp
        .mint_opaque("opaque-client", &[], Duration::from_secs(600));
    assert_eq!(env.send(post(&opaque)).await.status, 200);
    // A token whose kind nobody states is refused by a restricted resource (fail closed).
    let mut unknown = env.idp.claims("demo-client", &[], Duration::from_secs(600));
    unknown.as_object_mut().unwrap().remove("aut");
    assert_eq!(
        env.send(post(&env.idp.mint_claims(&unknown))).await.code(),
        "900905"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_openapi_file_with_x_wso2_extensions() {
    let dir = tempfile::tempdir().unwrap();
    let idp = keygate::devidp::DevIdp::start().await.unwrap();
    let echo = keygate::echo::EchoServer::start().await.unwrap();
    let oas3 = format!(
        "openapi: 3.0.1\ninfo: {{title: Billing, version: \"1.0\"}}\npaths:\n  /invoices/{{id}}:\n    get:\n      security: [{{default: [\"billing:read\"]}}]\n      x-auth-type: Application & Application User\ncomponents:\n  securitySchemes:\n    default:\n      type: oauth2\n      flows:\n        implicit:\n          authorizationUrl: https://test.com\n          scopes: {{\"billing:read\": Read invoices}}\nx-wso2-basePath: /billing/1.0\nx-wso2-production-endpoints: {{urls: [\"{}\"], type: http}}\n",
        echo.url()
    );
    write(dir.path(), "apis/billing.yaml", &oas3);
    write(dir.path(), "keygate.yaml", &main_config(&idp, "apis"));
    let env = Env::from_file(idp, &dir.path().join("keygate.yaml")).await;
    assert_eq!(
        env.get(
            "/billing/1.0/invoices/9",
            Some(&env.token(&["billing:read"]))
        )
        .await
        .status,
        200
    );
    assert_eq!(
        env.get("/billing/1.0/invoices/9", Some(&env.token(&["x"])))
            .await
            .code(),
        "900910"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_asgardeo_type_with_only_an_organization_validates_demo_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let idp = keygate::devidp::DevIdp::start().await.unwrap();
    write(dir.path(), "keygate.yaml", &format!(
        "key_managers:\n  - name: Asgardeo\n    type: asgardeo\n    organization: {}\n    base_url: {}\napis: [apis]\n",
        idp.org(), idp.base_url()
    ));
    write(dir.path(), "apis/o.yaml", "name: O\ncontext: /o\nversion: v1\nupstream: http://127.0.0.1:9\nresources: [{verb: GET, target: /health, auth_type: None}]\n");
    let c = Config::load(&dir.path().join("keygate.yaml")).unwrap();
    let km = &c.key_managers[0];
    assert_eq!(km.issuer, idp.issuer());
    assert_eq!(
        km.introspection_endpoint.as_ref().unwrap().as_str(),
        idp.introspection_url()
    );
    assert_eq!(km.consumer_key_claim.as_deref(), Some("azp"));
    let env = Env::start_with_idp(idp, |cfg, _, _| {
        cfg.key_managers = c.key_managers.clone();
    })
    .await;
    env.wait_ready(Duration::from_secs(10)).await;
    let r = env
        .get("/orders/v1/1", Some(&env.token(&["orders:read"])))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-auth-key-manager"], "Asgardeo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_fills_a_key_manager_and_import_km_prints_a_block_check_accepts() {
    let idp = keygate::devidp::DevIdp::start().await.unwrap();
    let well_known = format!(
        "{}/oauth2/token/.well-known/openid-configuration",
        idp.tenant_url()
    );
    // import-km, like the Admin Portal's Import button.
    let block = succeeded(
        &keygate()
            .args(["import-km", &well_known, "--name", "Imported"])
            .output()
            .unwrap(),
    );
    assert!(
        block.contains("type: asgardeo")
            && block.contains(&format!("issuer: \"{}\"", idp.issuer())),
        "{block}"
    );
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "keygate.yaml", &format!("{block}apis: []\n"));
    succeeded(
        &keygate()
            .args(["check", "--config"])
            .arg(dir.path().join("keygate.yaml"))
            .output()
            .unwrap(),
    );
    assert_eq!(
        idp.counters()
            .discovery
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    // A key manager given only by its discovery document, with the provider down at start.
    idp.set_down(true);
    let wk = well_known.clone();
    let env = Env::start_with_idp(idp, move |c, _, _| {
        let mut km = c.key_managers[0].clone();
        km.issuer = String::new();
        km.certificates = None;
        km.introspection_endpoint = None;
        km.well_known_endpoint = Some(wk.parse().unwrap());
        km.name = "Discovered".into();
        c.key_managers = vec![km];
    })
    .await;
    let r = env.admin("/readyz").await;
    assert_eq!(r.status, 503);
    assert!(r.text().contains("discovery document"), "{}", r.text());
    env.idp.set_down(false);
    env.wait_ready(Duration::from_secs(10)).await;
    let r = env
        .get("/orders/v1/1", Some(&env.token(&["orders:read"])))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-auth-key-manager"], "Discovered");
    // The discovered introspection endpoint serves opaque tokens too.
    let o = env
        .idp
        .mint_opaque("opaque-client", &["orders:read"], Duration::from_secs(600));
    assert_eq!(env.get("/orders/v1/1", Some(&o)).await.status, 200);
    assert!(
        env.idp
            .counters()
            .discovery
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wso2_key_manager_export_works() {
    let dir = tempfile::tempdir().unwrap();
    let idp = keygate::devidp::DevIdp::start().await.unwrap();
    let export = json!({
        "id": "5bb2e4d4-0000-4000-8000-000000000000", "name": "AsgardeoKM", "displayName": "Asgardeo",
        "type": "Asgardeo", "enabled": true,
        "wellKnownEndpoint": format!("{}/oauth2/token/.well-known/openid-configuration", idp.tenant_url()),
        "issuer": idp.issuer(),
        "certificates": {"type": "JWKS", "value": idp.jwks_url()},
        "introspectionEndpoint": idp.introspection_url(),
        "tokenEndpoint": idp.token_url(),
        "enableSelfValidationJWT": true, "consumerKeyClaim": "azp", "scopesClaim": "scope",
        "tokenValidation": [{"id": 0, "enable": true, "type": "REFERENCE", "value": "^[0-9a-f-]{36}$"}],
        "additionalProperties": {"org_name": idp.org(), "mgmt_client_id": "opaque-client", "mgmt_client_secret": "*****",
            "APIM_GLOBAL_SCOPES": "APIM_GLOBAL_SCOPES", "asgardeo_role_creation": "Enable"},
    });
    write(dir.path(), "km/asgardeo.json", &export.to_string());
    // The secret is masked in exports: the YAML supplies it.
    write(dir.path(), "keygate.yaml", "key_managers:\n  - wso2_export: km/asgardeo.json\n    base_url: BASE\n    client_secret: opaque-secret\napis: []\n");
    let text = std::fs::read_to_string(dir.path().join("keygate.yaml"))
        .unwrap()
        .replace("BASE", &idp.base_url());
    write(dir.path(), "keygate.yaml", &text);
    let c = Config::load(&dir.path().join("keygate.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let km = &c.key_managers[0];
    assert_eq!(km.name, "AsgardeoKM");
    assert_eq!(km.token_handling.len(), 1);
    assert!(km.connector.as_ref().unwrap().create_roles.unwrap());
    let env = Env::start_with_idp(idp, |cfg, _, _| cfg.key_managers = c.key_managers.clone()).await;
    env.wait_ready(Duration::from_secs(10)).await;
    assert_eq!(env.read_status("/orders/v1/1").await, 200);
    let o = env
        .idp
        .mint_opaque("opaque-client", &["orders:read"], Duration::from_secs(600));
    assert_eq!(
        env.get("/orders/v1/1", Some(&o)).await.status,
        200,
        "introspected with the export's client id"
    );
    // The REFERENCE pattern refuses what does not look like an Asgardeo opaque token.
    assert_eq!(
        env.get("/orders/v1/1", Some("not-a-uuid-token"))
            .await
            .status,
        401
    );
    assert_eq!(env.idp.introspect_calls(), 1);
}
