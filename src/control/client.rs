//! Asgardeo management REST calls, as WSO2's Asgardeo connector makes them (reference §5):
//! a client-credentials management token, the API Resource Management API and SCIM2 Roles v2.
//! Every call retries on 429 and 5xx, honouring `Retry-After`. Calls are recorded (method and
//! path, never a secret) so `keygate sync` can report what it did.

use super::SyncError;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

/// The internal scopes the management token asks for.
pub const MANAGEMENT_SCOPES: &str = "internal_api_resource_create internal_api_resource_view \
internal_api_resource_update internal_api_resource_delete internal_role_mgt_view \
internal_role_mgt_create internal_role_mgt_update internal_role_mgt_delete";

/// A scope of an API resource.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteScope {
    /// The scope key.
    pub name: String,
    /// Display name.
    #[serde(default)]
    pub display_name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
}

/// A SCIM2 role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRole {
    /// SCIM id.
    pub id: String,
    /// Role name.
    pub name: String,
    /// Permission values (scope keys) with their display names.
    pub permissions: Vec<(String, String)>,
}

/// SCIM2 role permissions: `[{value: <scope key>, display: <scope name>}]`.
fn permissions_json(permissions: &[(String, String)]) -> Vec<Value> {
    permissions
        .iter()
        .map(|(v, d)| json!({"value": v, "display": d}))
        .collect()
}

/// The client.
pub struct Client {
    http: reqwest::Client,
    token: String,
    /// `METHOD path` of every call made, in order.
    pub calls: Vec<String>,
    max_attempts: u32,
}

fn path_of(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.path().to_string())
        .unwrap_or_else(|_| url.to_string())
}

impl Client {
    /// Get a management token (client_credentials, HTTP Basic) from `token_endpoint`.
    pub async fn connect(
        token_endpoint: &str,
        client_id: &str,
        client_secret: &str,
    ) -> Result<Self, SyncError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| SyncError::Http(format!("HTTP client: {e}")))?;
        let mut me = Self {
            http,
            token: String::new(),
            calls: Vec::new(),
            max_attempts: 5,
        };
        let req = me
            .http
            .post(token_endpoint)
            .basic_auth(client_id, Some(client_secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", MANAGEMENT_SCOPES),
            ]);
        let body = me.send("POST", token_endpoint, req).await?;
        me.token = body["access_token"]
            .as_str()
            .ok_or_else(|| SyncError::Http("the token endpoint returned no access_token".into()))?
            .to_string();
        Ok(me)
    }

    /// Send with retries on 429/5xx (Retry-After honoured, else 0.5 s doubling). Returns the
    /// JSON body (Null when empty).
    async fn send(
        &mut self,
        method: &str,
        url: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<Value, SyncError> {
        self.calls.push(format!("{method} {}", path_of(url)));
        let mut backoff = Duration::from_millis(500);
        for attempt in 1..=self.max_attempts {
            let Some(r) = req.try_clone() else {
                return Err(SyncError::Http("request cannot be retried".into()));
            };
            let resp = r
                .send()
                .await
                .map_err(|e| SyncError::Http(format!("{method} {}: {e}", path_of(url))))?;
            let status = resp.status();
            if (status.as_u16() == 429 || status.is_server_error()) && attempt < self.max_attempts {
                let wait = resp
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s.min(60)))
                    .unwrap_or(backoff);
                log::warn!(
                    "{method} {}: HTTP {}, retrying in {wait:?}",
                    path_of(url),
                    status.as_u16()
                );
                tokio::time::sleep(wait).await;
                backoff *= 2;
                continue;
            }
            let text = resp.text().await.unwrap_or_default();
            if !status.is_success() {
                return Err(SyncError::Http(format!(
                    "{method} {}: HTTP {}: {}",
                    path_of(url),
                    status.as_u16(),
                    text.chars().take(300).collect::<String>()
                )));
            }
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).map_err(|e| {
                SyncError::Http(format!(
                    "{method} {}: the answer is not JSON: {e}",
                    path_of(url)
                ))
            });
        }
        Err(SyncError::Http(format!(
            "{method} {}: gave up after {} attempts",
            path_of(url),
            self.max_attempts
        )))
    }

    async fn call(
        &mut self,
        method: http::Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<Value, SyncError> {
        let mut req = self
            .http
            .request(method.clone(), url)
            .bearer_auth(&self.token)
            .header(http::header::ACCEPT, "application/json");
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(method.as_str(), url, req).await
    }

    /// The id of the API resource named `name`.
    pub async fn find_resource(
        &mut self,
        base: &str,
        name: &str,
    ) -> Result<Option<String>, SyncError> {
        let url = format!(
            "{base}?filter=name+eq+{}",
            url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
        );
        let v = self.call(http::Method::GET, &url, None).await?;
        Ok(v["apiResources"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["name"] == name)
            .and_then(|r| r["id"].as_str().map(str::to_string)))
    }

    /// Create the global API resource (`requiresAuthorization: true`).
    pub async fn create_resource(
        &mut self,
        base: &str,
        name: &str,
        identifier: &str,
    ) -> Result<String, SyncError> {
        let body = json!({"name": name, "identifier": identifier, "description": "API scopes managed by keygate sync",
            "requiresAuthorization": true, "scopes": []});
        let v = self.call(http::Method::POST, base, Some(body)).await?;
        v["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| SyncError::Http("created API resource has no id".into()))
    }

    /// The scopes of resource `id`.
    pub async fn scopes(&mut self, base: &str, id: &str) -> Result<Vec<RemoteScope>, SyncError> {
        let v = self
            .call(http::Method::GET, &format!("{base}/{id}/scopes"), None)
            .await?;
        serde_json::from_value(v)
            .map_err(|e| SyncError::Http(format!("unexpected scopes list: {e}")))
    }

    /// Add scopes in one PATCH.
    pub async fn add_scopes(
        &mut self,
        base: &str,
        id: &str,
        scopes: &[RemoteScope],
    ) -> Result<(), SyncError> {
        let added: Vec<Value> = scopes
            .iter()
            .map(|s| json!({"name": s.name, "displayName": s.display_name, "description": s.description}))
            .collect();
        self.call(
            http::Method::PATCH,
            &format!("{base}/{id}"),
            Some(json!({"addedScopes": added})),
        )
        .await
        .map(|_| ())
    }

    /// Update one scope's display name and description.
    pub async fn update_scope(
        &mut self,
        base: &str,
        id: &str,
        s: &RemoteScope,
    ) -> Result<(), SyncError> {
        let url = format!(
            "{base}/{id}/scopes/{}",
            url::form_urlencoded::byte_serialize(s.name.as_bytes()).collect::<String>()
        );
        self.call(
            http::Method::PATCH,
            &url,
            Some(json!({"displayName": s.display_name, "description": s.description})),
        )
        .await
        .map(|_| ())
    }

    /// Delete one scope.
    pub async fn delete_scope(
        &mut self,
        base: &str,
        id: &str,
        name: &str,
    ) -> Result<(), SyncError> {
        let url = format!(
            "{base}/{id}/scopes/{}",
            url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
        );
        self.call(http::Method::DELETE, &url, None)
            .await
            .map(|_| ())
    }

    fn role_of(v: &Value) -> Option<RemoteRole> {
        Some(RemoteRole {
            id: v["id"].as_str()?.to_string(),
            name: v["displayName"].as_str()?.to_string(),
            permissions: v["permissions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    Some((
                        p["value"].as_str()?.to_string(),
                        p["display"].as_str().unwrap_or("").to_string(),
                    ))
                })
                .collect(),
        })
    }

    /// Find a role by name (SCIM2 search), with its permissions.
    pub async fn find_role(
        &mut self,
        base: &str,
        name: &str,
    ) -> Result<Option<RemoteRole>, SyncError> {
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": format!("displayName eq {name}")});
        let v = self
            .call(http::Method::POST, &format!("{base}/.search"), Some(body))
            .await?;
        let Some(id) = v["Resources"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["displayName"] == name)
            .and_then(|r| r["id"].as_str())
        else {
            return Ok(None);
        };
        let id = id.to_string();
        let full = self
            .call(http::Method::GET, &format!("{base}/{id}"), None)
            .await?;
        Ok(Self::role_of(&full))
    }

    /// Every role (SCIM2 search without a filter, paged), each read with `GET` so that its
    /// permissions are complete (list results may leave them out).
    pub async fn all_roles(&mut self, base: &str) -> Result<Vec<RemoteRole>, SyncError> {
        const PAGE: usize = 100;
        let mut ids = Vec::new();
        let mut start = 1;
        loop {
            let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "startIndex": start, "count": PAGE});
            let v = self
                .call(http::Method::POST, &format!("{base}/.search"), Some(body))
                .await?;
            let page: Vec<String> = v["Resources"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["id"].as_str().map(str::to_string))
                .collect();
            let total = v["totalResults"].as_u64().unwrap_or(0) as usize;
            let n = page.len();
            ids.extend(page);
            if n < PAGE || ids.len() >= total {
                break;
            }
            start += n;
        }
        let mut roles = Vec::with_capacity(ids.len());
        for id in ids {
            let full = self
                .call(http::Method::GET, &format!("{base}/{id}"), None)
                .await?;
            roles.extend(Self::role_of(&full));
        }
        Ok(roles)
    }

    /// Create a role with permissions.
    pub async fn create_role(
        &mut self,
        base: &str,
        name: &str,
        permissions: &[(String, String)],
    ) -> Result<(), SyncError> {
        let perms = permissions_json(permissions);
        self.call(
            http::Method::POST,
            base,
            Some(json!({"displayName": name, "permissions": perms})),
        )
        .await
        .map(|_| ())
    }

    /// Replace a role's permissions.
    pub async fn set_permissions(
        &mut self,
        base: &str,
        id: &str,
        permissions: &[(String, String)],
    ) -> Result<(), SyncError> {
        let perms = permissions_json(permissions);
        let body = json!({"Operations": [{"op": "replace", "value": {"permissions": perms}}]});
        self.call(http::Method::PATCH, &format!("{base}/{id}"), Some(body))
            .await
            .map(|_| ())
    }
}
